"""Which part of a document answers a question: its sections scored by the question's words and by retrieval.

A procedure's sections are asked for by fixed aspects (hồ sơ, lệ phí…: `question.ASPECTS`); plans, topics and long
guides have headings of their own ("Hình thức tuyên truyền", "Xem kết quả ở đâu"). Each section of such an entry is
scored by three pieces of evidence: how much of its heading the question says (words that several headings or the
title share count little), how much of the question's own words its text holds (weighted by how few sections hold
them), and how close its best chunk's vector is to the question's (retrieval has scored every chunk of the entry
already). The best section comes first; a second follows when the question says its heading too; with no evidence
for any section, or when the question asks about the whole document, the answer is an overview that names the
sections. All of it is pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .knowledge import Entry
from .question import STOPWORDS, Question, analyse
from .text import bigrams, fold, has_diacritics, nfc, syllables

# Question phrases (folded) that ask for a heading in other words, by the heading words they stand for.
CUES: dict[str, tuple[str, ...]] = {
    "mục đích": ("muc tieu", "nham muc dich", "de lam gi", "nham gi"),
    "hình thức": ("bang cach nao", "cach nao", "kenh nao", "qua kenh", "phuong tien nao", "bang gi", "qua dau"),
    "tổ chức thực hiện": ("ai thuc hien", "ai chiu trach nhiem", "chiu trach nhiem", "phan cong", "giao cho",
                          "giao nhiem vu", "co quan nao thuc hien", "ai to chuc"),
    "nội dung": ("tuyen truyen gi", "tuyen truyen ve gi", "tuyen truyen nhung gi"),
    "chủ đề": ("khau hieu", "thong diep"),
    "ý nghĩa": ("loi ich", "tac dung", "duoc loi gi"),
    "được triển khai": ("trien khai the nao", "thuc hien the nao", "thuc hien ra sao", "trien khai ra sao"),
}
# Question phrases (folded) that ask about a document as a whole.
WHOLE = ("noi gi", "noi ve gi", "noi ve nhung gi", "tom tat", "gom nhung phan", "co nhung phan", "nhung phan nao",
         "gom nhung gi", "co nhung gi", "gioi thieu", "tong quan", "noi dung chinh", "co gi", "ve viec gi")
# Words that name the document or the turn of the conversation, not a part of it.
DOCUMENT_WORDS = frozenset("kế hoạch hướng dẫn này đó phần còn thế vậy sao thì nữa".split())
FOLDED_DOCUMENT_WORDS = frozenset(fold(w) for w in DOCUMENT_WORDS)
# Question words, pronouns and politeness, with their diacritics: folded, "đề" and "chủ" would be "để" and "chú".
EXACT_STOPWORDS = frozenset("""à á ạ ai anh bạn bị biết bởi các cách cái cần câu chị cho chứ có còn của cũng đã đang
    để đến đều đi điều đó được em gì giúp hay hãy hỏi hoặc khi không là làm liệu lúc mà mình một muốn nào nè nếu
    nhé nhá nhiều như những nói ở ơi phải qua quá ra rồi sao sẽ tại thế thì tôi trên từ và vậy về vì với xin ừ
    vâng ko k j z ntn""".split())

TEXT_WEIGHT = 0.6  # of the text's evidence, against the heading's (1)
DENSE_WEIGHT = 3.0  # of the best chunk's cosine behind the entry's best section's
MIN_EVIDENCE = 0.3  # of heading and text evidence together, below which no section is chosen: an overview
ASKED_HEADING = 0.6  # a heading said this fully by the question is asked for (a second section is shown)
SHARED = 0.25  # the weight of a heading word that is a stopword or a word of the document's title
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class SectionScore:
    """The evidence that one section answers a question."""

    heading: str
    said: float  # share of the heading's weight the question says (0–1)
    text: float  # share of the question's telling words the section's text holds (0–1)
    dense: float  # the best chunk's cosine minus the entry's best section's (≤ 0); 0 without vectors

    @property
    def evidence(self) -> float:
        """Lexical evidence alone: what the question says about this section."""
        return self.said + TEXT_WEIGHT * self.text

    @property
    def score(self) -> float:
        """Lexical evidence, with retrieval's vectors to break ties."""
        return self.evidence + DENSE_WEIGHT * self.dense


@dataclass(frozen=True)
class Choice:
    """The sections that answer a question, best first; none means an overview of the whole document."""

    headings: tuple[str, ...]
    scores: tuple[SectionScore, ...]

    @property
    def whole(self) -> bool:
        """No one section: the question is about the document as a whole."""
        return not self.headings


def _words(text: str, exact: bool) -> list[str]:
    """Lower-case words with their diacritics ("dùng" is not "dung"), or folded syllables for a question typed
    without diacritics."""
    return _WORD.findall(nfc(text).lower()) if exact else syllables(text)


def _terms(text: str, exact: bool) -> list[str]:
    words = _words(text, exact)
    return words + bigrams(words)


def _stop(term: str, exact: bool) -> bool:
    """A word or pair made of stopwords only (matched with diacritics when the question has them)."""
    return all((p in EXACT_STOPWORDS) if exact else (p in STOPWORDS or p == "ai") for p in term.split("_"))


def _document_word(word: str, exact: bool) -> bool:
    return word in DOCUMENT_WORDS if exact else word in FOLDED_DOCUMENT_WORDS


@dataclass(frozen=True)
class Asked:
    """A question's words as section headings and texts are matched against them."""

    exact: bool  # typed with diacritics: matched with them
    terms: frozenset[str]  # its words and word pairs, and the heading words its cue phrases stand for
    telling: tuple[str, ...]  # its content words and pairs: neither stopwords nor words naming the document


def asked_terms(question: Question) -> Asked:
    """The question's words and pairs (with diacritics when it has them) and the heading words of its cues."""
    exact = has_diacritics(question.text)
    words = _words(question.text, exact)
    terms = set(words + bigrams(words))
    padded = f" {question.folded} "
    for heading_words, phrases in CUES.items():
        if any(f" {p} " in padded for p in phrases):
            terms.update(_terms(heading_words, exact))
    own = [w for w in words if not _stop(w, exact) and not _document_word(w, exact)]
    # pairs of content words; folded syllables are too ambiguous ("ban" is bạn and bản) to drop a pair for one
    pairs = [f"{a}_{b}" for a, b in zip(words, words[1:])
             if ((not _stop(a, exact) and not _stop(b, exact)) if exact else not _stop(f"{a}_{b}", exact))]
    return Asked(exact, frozenset(terms), tuple(dict.fromkeys(own + pairs)))


def asks_whole(question: Question) -> bool:
    """Whether a question asks what a document says as a whole ("kế hoạch 37 nói gì")."""
    padded = f" {question.folded} "
    return any(f" {p} " in padded for p in WHOLE)


def heading_weights(entry: Entry, exact: bool) -> dict[str, dict[str, float]]:
    """Each heading's terms (words and word pairs), weighted by how few of the entry's headings hold them; terms
    made of stopwords or found in the entry's title count little."""
    headings = [s.heading for s in entry.sections]
    title = set(_terms(entry.title, exact))
    term_sets = [set(_terms(h, exact)) for h in headings]
    n = len(headings) + 1
    out: dict[str, dict[str, float]] = {}
    for heading, terms in zip(headings, term_sets):
        weights = {}
        for term in terms:
            shared = term in title
            df = sum(term in other for other in term_sets) + shared
            weight = math.log(1 + n / df)
            weights[term] = weight * SHARED if shared or _stop(term, exact) else weight
        out[heading] = weights
    return out


def said_share(weights: Mapping[str, float], terms: frozenset[str] | set[str]) -> float:
    """The share of a heading's weight among the question's terms."""
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in terms) / total if total else 0.0


def text_shares(entry: Entry, asked: Asked) -> dict[str, float]:
    """For each section, the share of the question's telling words its text holds, each weighted by how few
    sections hold it. Words of the title, keywords and number name the document, not a part of it (a heading
    that has them is said by the question: `said_share`)."""
    exact = asked.exact
    title = set(_terms(" ".join([entry.title, *entry.values("tu_khoa"), entry.text("so_hieu")]), exact))
    texts = {s.heading: set(_terms(f"{s.heading}\n{s.text}", exact)) for s in entry.sections}
    n = len(texts)
    weights = {}
    for term in asked.telling:
        df = sum(term in terms for terms in texts.values())
        if df and term not in title:
            weights[term] = math.log(1 + n / df)
    total = sum(weights.values())
    return {h: (sum(w for t, w in weights.items() if t in terms) / total if total else 0.0)
            for h, terms in texts.items()}


def score_sections(entry: Entry, question: Question, dense: Mapping[str, float] | None = None) -> list[SectionScore]:
    """Every section of an entry scored for a question, in the entry's order."""
    asked = asked_terms(question)
    heads = heading_weights(entry, asked.exact)
    texts = text_shares(entry, asked)
    said = {h: said_share(w, asked.terms) for h, w in heads.items()}
    for heading, weights in heads.items():
        if weights and all(_stop(t, asked.exact) for t in weights):
            # "Là gì", "Làm thế nào": said only word for word, and any "… là gì" says it: only when no other is
            said[heading] = float(set(weights) <= asked.terms)
            said[heading] *= 1 - max((v for h, v in said.items() if h != heading), default=0.0)
    dense = dense or {}
    best = max((dense.get(s.heading, -1.0) for s in entry.sections), default=-1.0)
    return [SectionScore(s.heading, said[s.heading], texts[s.heading],
                         (dense[s.heading] - best) if s.heading in dense else (-0.05 if dense else 0.0))
            for s in entry.sections]


def choose_sections(entry: Entry, question: Question, dense: Mapping[str, float] | None = None,
                    limit: int = 2) -> Choice:
    """The sections that answer a question, best first; none when it asks about the whole document or says
    nothing that a section holds."""
    scores = score_sections(entry, question, dense)
    if not scores:
        return Choice((), ())
    said = [s for s in scores if s.said >= ASKED_HEADING]
    if (asks_whole(question) and not said) or max(s.evidence for s in scores) < MIN_EVIDENCE:
        return Choice((), tuple(scores))
    best = max(scores, key=lambda s: s.score)
    chosen = [best.heading]
    # a second section only when the question says its heading with words the first heading lacks
    asked = asked_terms(question)
    heads = heading_weights(entry, asked.exact)
    for s in sorted(said, key=lambda s: -s.score):
        if len(chosen) >= limit or s.heading in chosen:
            continue
        own = {t: w for t, w in heads[s.heading].items() if t not in heads[best.heading] and not _stop(t, asked.exact)}
        if own and said_share(own, asked.terms) >= ASKED_HEADING:
            chosen.append(s.heading)
    if len(chosen) > 1 and all(s.said >= ASKED_HEADING for s in scores if s.heading in chosen):
        order = [s.heading for s in scores]  # both asked for by name: in the document's order
        chosen.sort(key=order.index)
    return Choice(tuple(chosen), tuple(scores))


_SUBHEADING = re.compile(r"^#{3,6}\s+(.+?)\s*$", re.M)


def subsections(text: str) -> list[tuple[str, str]]:
    """A section's `### ` parts as (title, text); text before the first is titled ''."""
    marks = list(_SUBHEADING.finditer(text))
    if not marks:
        return [("", text)]
    head = text[: marks[0].start()].strip()
    out = [("", head)] if head else []
    for mark, following in zip(marks, [*marks[1:], None]):
        end = following.start() if following else len(text)
        out.append((mark.group(1), text[mark.end(): end].strip()))
    return out


def focus_subsection(text: str, question: Question, limit: int) -> str:
    """A section with `### ` parts: whole when it fits, else the part the question's words point at, the others
    named after it. Sub-headings are written in bold either way."""
    parts = subsections(text)
    if len(parts) == 1:
        return text
    bolded = "\n".join((f"**{title}**\n{body}" if title else body) for title, body in parts)
    if len(bolded) <= limit:
        return bolded
    asked = asked_terms(question)
    sets = [set(_terms(f"{title}\n{body}", asked.exact)) for title, body in parts]
    n = len(parts)
    weights = {t: math.log(1 + n / df) for t in asked.telling if (df := sum(t in s for s in sets))}
    overlap = [sum(w for t, w in weights.items() if t in s) for s in sets]
    best = max(range(n), key=lambda i: overlap[i])
    title, body = parts[best]
    if overlap[best] <= 0 or not title:
        return bolded
    others = [t for t, _ in parts if t and t != title]
    tail = f"\n\nPhần này còn nói về: {'; '.join(others)}." if others else ""
    head = f"**{title}**\n"
    room = limit - len(head) - len(tail) - 2
    if len(body) > room:  # the other parts are named whatever the length of this one
        body = body[:room].rsplit("\n", 1)[0] if "\n" in body[:room] else body[:room].rsplit(" ", 1)[0]
        body = body.rstrip() + " …"
    return head + body + tail


def short_label(heading: str, title: str) -> str:
    """A button label for a section: its heading without trailing words of the document's title ("Hình thức
    tuyên truyền" of a plan on tuyên truyền → "Hình thức"). Words are compared with their diacritics."""
    title_words = set(_words(title, True))
    words = heading.split()
    while len(words) > 1 and set(_words(words[-1], True)) <= title_words:
        words.pop()
    return " ".join(words).rstrip(",:;")


def overview(entry: Entry, lead_chars: int = 100) -> str:
    """The sections of a document, each named with the start of its text."""
    lines = []
    for section in entry.sections:
        body = [line.strip().lstrip("-*+ ").strip() for line in section.text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        lead = _cut(re.sub(r"\*\*|__", "", " ".join(x for x in body if x)), lead_chars)
        lines.append(f"- **{section.heading}**" + (f": {lead}" if lead else ""))
    return "\n".join(lines)


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-ZÀ-Ỹ\"“])")


def sentences(text: str) -> list[str]:
    """A paragraph cut into sentences."""
    return [s.strip() for s in _SENTENCE.split(" ".join(text.split())) if s.strip()]


def framing(entry: Entry, limit: int = 260) -> str:
    """One or two lines above a section: for a plan, who issued it and when, and its summary's own sentence on
    whether it is current; for a topic, its summary's first sentence."""
    said = sentences(re.sub(r"\*\*|__", "", entry.summary))
    if entry.kind != "plan":
        return _cut(said[0], limit) if said else ""
    issuer, date = entry.text("co_quan_ban_hanh"), entry.text("ngay_ban_hanh")
    when = (f"năm {date}" if len(date) == 4 else "ngày " + "/".join(reversed(date.split("-")))) if date else ""
    lead = " ".join(x for x in ["Do", issuer, "ban hành", when] if x) + "." if issuer else ""
    status = next((s for s in said if "hiện hành" in s), "")
    # what the summary says of itself ("Nội dung dưới đây tóm tắt theo…") is not said of the document
    clauses = [c.strip() for c in status.split(";") if "tóm tắt" not in c]
    status = "; ".join(clauses)
    status = status[:1].upper() + status[1:]
    if status and status[-1] not in ".!?":
        status += "."
    return _cut(" ".join(x for x in (lead, status) if x), limit)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > 0 else limit].rstrip(",;:") + " …"


def offered(entry: Entry, shown: Sequence[str], limit: int = 4) -> list[tuple[str, str]]:
    """Follow-ups for a document: (button label, heading) of its sections not shown, in its order."""
    return [(short_label(s.heading, entry.title), s.heading) for s in entry.sections if s.heading not in shown][:limit]


def asked_section(entry: Entry, question: Question) -> bool:
    """Whether a follow-up names only a part of this document ("còn hình thức thì sao?", a follow-up button): every
    content word is a word of its headings, its title or a cue, and the question says one of its headings."""
    words = [s for s in question.content if s not in FOLDED_DOCUMENT_WORDS]
    known = {w for s in entry.sections for w in syllables(s.heading)} | set(syllables(entry.title))
    known |= {w for phrases in CUES.values() for p in phrases for w in p.split()}
    if not all(w in known for w in words):  # no content word at all: "Là gì", said word for word, still is one
        return False
    return any(s.said >= ASKED_HEADING for s in score_sections(entry, question))


def said_heading(entry: Entry, question: Question) -> str | None:
    """The heading a question says most fully, if any."""
    said = [s for s in score_sections(entry, question) if s.said >= ASKED_HEADING]
    return max(said, key=lambda s: s.said).heading if said else None


def says_other_part(document: Entry, question: Question, faq_wordings: Sequence[str]) -> bool:
    """Whether a question that found an FAQ about this document says one of the document's headings that none of
    the FAQ's own wordings says: the document's section answers it, not the FAQ."""
    heading = said_heading(document, question)
    if heading is None:
        return False
    for wording in faq_wordings:
        if any(s.heading == heading and s.said >= ASKED_HEADING for s in score_sections(document, analyse(wording))):
            return False
    return True
