"""Compose one channel-agnostic, extractive answer from the retrieved entries."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote_plus

from .index import Record
from .knowledge import HO_SO, NOI_NOP, PHI, THOI_HAN, apply_until
from .phrases import not_found
from .question import ASPECT_WORDS, STOPWORDS, Question, content_syllables, detect_aspects
from .retrieval import DECLINE_BELOW, Hit, ListingHit, SearchResult
from .sections import asked_section, choose_sections, focus_subsection, framing, overview, says_other_part
from .sections import offered as offered_sections
from .siblings import tied_siblings
from .text import fold, reflow, syllables

CARD = (HO_SO, THOI_HAN, PHI, NOI_NOP)
# Kinds of answer that do not answer from the base: unsure, or the base does not hold what was asked.
NOT_ANSWERED = ("decline", "not_held", "listed", "late")
# Words of a follow-up that name no new subject: "còn nộp online thì sao?"
FOLLOW_UP_WORDS = frozenset("con the vay sao thi nop lam duoc cai viec nua xem".split())
GREETING = re.compile(
    r"^(xin chao|chao|chao ban|chao bot|chao em|chao anh|chao chi|hello|hi|hey|alo|a lo|good morning|"
    r"chao buoi sang|chao buoi toi)( ban| bot| em| anh| chi| tro li| ad| admin)?$"
)
THANKS = re.compile(r"^(cam on|cam on ban|cam on nhieu|thank|thanks|thank you|tks|thanks ban|ok|oke|okay|"
                    r"ok cam on|da hieu|hieu roi|tam biet|bye)( ban| nhieu| nhe| a| bot| em| anh| chi)*$")
SECTION_LIMIT = 900
CARD_LIMIT = 320
DOCUMENTS = ("plan", "topic")  # kinds whose sections are chosen by their own headings (`sections.choose_sections`)
OVERVIEW_HEADING = "Các phần"


@dataclass
class Source:
    """An entry an answer draws on, as cited to the citizen."""

    id: str
    title: str
    kind: str
    date: str
    url: str
    score: float
    topics: list[str]
    imported: bool = False  # from the national portal's records: cited as its data, with the data's date if known


@dataclass
class Link:
    """A link to an official service."""

    title: str
    url: str


# What an answer is, each kind made in one place: "answer" (from the knowledge base), "decline" (nothing found sure
# enough: `decline`), "greeting", "thanks" and "empty" (`compose_answer`, before any search), "error" (a fault:
# `Assistant.ask`, the handoff), "limited" (over the per-user rate: the desk), "busy" (too many citizens at once, not
# queued: the desk), "handoff" (a ticket for staff opened),
# "not_held" (the base does not hold the procedure asked about: `not_held`), "listed" (a procedure the base knows by
# name only: `listed`), "late" (a message that reached the bot too late to be answered, kept for staff: the desk),
# "clarify" (sibling procedures tie: the citizen is asked which one is meant, the siblings as sources: `clarify`).
Kind = Literal["answer", "decline", "greeting", "thanks", "empty", "error", "limited", "busy", "handoff", "not_held",
               "listed", "late", "clarify"]


@dataclass
class Answer:
    """The one value every channel renders."""

    question: str
    kind: Kind
    title: str = ""
    parts: list[tuple[str, str]] = field(default_factory=list)  # (heading, text); heading may be ''
    sources: list[Source] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    suggestions_label: str = "Có thể bạn muốn hỏi:"  # "may be related" where the base lacks what was asked
    confidence: float = 0.0
    entry_id: str | None = None
    aspects: list[str] = field(default_factory=list)
    offered: list[tuple[str, str]] = field(default_factory=list)  # (label, heading): a document's other sections
    choices: list[tuple[str, str]] = field(default_factory=list)  # (label, question): the siblings to choose from

    @property
    def answered(self) -> bool:
        """True when the text answers from the knowledge base (a greeting, an apology or a decline does not)."""
        return self.kind == "answer"

    @property
    def declined(self) -> bool:
        """True when the bot looked and did not answer: unsure ("decline"), or the base lacks what was asked
        ("not_held", "listed")."""
        return self.kind in NOT_ANSWERED


@dataclass
class Conversation:
    """What a chat remembers between turns: the entry last talked about, and the siblings just offered."""

    last_entry: str | None = None
    choices: list[str] = field(default_factory=list)  # entry ids offered by a clarification, in its order
    choice_aspects: list[str] = field(default_factory=list)  # what the clarified question asked about them


def truncate(text: str, limit: int) -> str:
    """Shorten text to whole lines (or sentences) within a limit, marking the cut."""
    text = text.strip()
    if len(text) <= limit:
        return text
    out = ""
    for line in text.split("\n"):
        if len(out) + len(line) + 1 > limit:
            break
        out += line + "\n"
    if not out.strip():
        cut = max(text.rfind(". ", 0, limit), text.rfind(" ", 0, limit))
        out = text[: cut if cut > 0 else limit]
    return out.rstrip() + " …"


def _title_with_date(entry: Record) -> str:
    if entry.kind == "plan" and entry.date:
        return f"{entry.title} (ban hành năm {entry.date[:4]})"
    return entry.title


def _sections(entry: Record) -> dict[str, str]:
    today = dt.date.today()  # facts marked {den_het: …} say until when; past that date they are left out
    return {s.heading: text for s in entry.sections if (text := reflow(apply_until(s.text, today)))}


def _summary(entry: Record) -> str:
    return reflow(apply_until(entry.summary, dt.date.today()))


def _source(entry: Record, score: float) -> Source:
    return Source(entry.id, _title_with_date(entry), entry.kind, entry.date, entry.source_url, round(score, 4),
                  entry.topics, entry.imported)


def _links(entry: Record, defaults: Sequence[Link]) -> list[Link]:
    links = []
    if entry.online:
        links.append(Link(entry.online.title, entry.online.url))
    for link in defaults:
        if all(link.url != x.url for x in links):
            links.append(link)
    return links


def procedure_parts(entry: Record, aspects: Sequence[str]) -> list[tuple[str, str]]:
    """The sections asked for, or a short card (what, documents, time, fee, where) when none is."""
    sections = _sections(entry)
    wanted = [a for a in aspects if a in sections]
    if wanted:
        return [(a, truncate(sections[a], SECTION_LIMIT)) for a in wanted[:2]]
    parts = [("", truncate(_summary(entry), CARD_LIMIT))]
    for heading in CARD:
        if heading in sections:
            parts.append((heading, truncate(sections[heading], CARD_LIMIT)))
    return parts


def compose_answer(result: SearchResult, entries: dict[str, Record], chunk_text: Sequence[str],
                   defaults: Sequence[Link], hotline: dict | None, conversation: Conversation | None = None,
                   max_sources: int = 3) -> Answer:
    """Turn search results into an answer: the part asked for first, then sources and links; or decline."""
    asked = result.question
    question, folded = asked.text, asked.folded
    if not folded:
        return Answer(question, "empty", parts=[("", EMPTY_TEXT)], links=list(defaults))
    if GREETING.match(folded):
        return Answer(question, "greeting", parts=[("", GREETING_TEXT)], links=list(defaults))
    if THANKS.match(folded):
        return Answer(question, "thanks", parts=[("", THANKS_TEXT)])

    aspects = list(asked.aspects)
    if conversation is not None and conversation.choices:
        offered_ids, conversation.choices = conversation.choices, []
        chosen = chosen_entry(folded, offered_ids, entries)
        if chosen is not None:  # "2", or the button of a sibling: answer it as the clarified question asked
            conversation.last_entry = chosen.id
            return _answer_entry(asked, chosen, aspects or conversation.choice_aspects, 1.0, [_source(chosen, 1.0)],
                                 defaults, {}, entries)
    own = [s for s in asked.content if s not in ASPECT_WORDS and s not in FOLLOW_UP_WORDS]
    last = entries.get(conversation.last_entry) if conversation and conversation.last_entry else None
    if last is not None and last.kind == "procedure" and aspects and not own:
        return _answer_entry(asked, last, aspects, result.confidence, [_source(last, 1.0)], defaults, {}, entries)
    if last is not None and last.kind in DOCUMENTS and asked_section(last, asked):
        # "còn hình thức thì sao?", or a follow-up button: a part of the document just discussed
        return _answer_entry(asked, last, aspects, result.confidence, [_source(last, 1.0)], defaults, {}, entries)

    if result.named is not None:
        return listed(question, result.named, result, entries, defaults, hotline)
    if not result.hits or result.confidence < DECLINE_BELOW:
        return decline(question, result, entries, defaults, hotline)
    if result.covered < result.covered_below:
        return not_held(asked, result, entries, defaults, hotline)

    top = result.hits[0]
    entry = entries[top.entry_id]
    if entry.kind == "faq" and aspects:
        # "khai sinh ở đâu" found an FAQ about doing it online: the procedure's own section answers better.
        asked_by_faq = {a for q in entry.questions for a in detect_aspects(q)}
        procedure = next((entries[t] for t in entry.topics[1:]
                          if t in entries and entries[t].kind == "procedure"), None)
        if procedure and not asked_by_faq & set(aspects) and any(a in _sections(procedure) for a in aspects):
            lead = Hit(entry_id=procedure.id, score=top.score)
            result.hits = [lead] + [h for h in result.hits if h.entry_id != procedure.id]
            top, entry = lead, procedure
    main = entry.topics[1] if entry.kind == "faq" and len(entry.topics) > 1 else None
    if main in entries and entries[main].kind == "procedure":  # the FAQ is first of all about a procedure
        procedure = entries[main]
        if not asks_faq_point(asked.content, entry, procedure):
            # "đăng ký khai sinh" matched the FAQ on late registration about as well as the procedure: a question
            # that names none of the FAQ's own point is about the procedure in general.
            lead = Hit(entry_id=procedure.id, score=top.score)
            result.hits = [lead] + [h for h in result.hits if h.entry_id != procedure.id]
            top, entry = lead, procedure
    if main in entries and entries[main].kind in DOCUMENTS and says_other_part(entries[main], asked, entry.questions):
        # "chỉ số PCI có ý nghĩa gì với người dân" found the FAQ on what PCI is: the topic's section answers it
        document = entries[main]
        found = next((h for h in result.hits if h.entry_id == document.id), None)
        lead = Hit(entry_id=document.id, score=top.score, sections=found.sections if found else {})
        result.hits = [lead] + [h for h in result.hits if h.entry_id != document.id]
        top, entry = lead, document
    if entry.kind == "procedure":
        titles = {h.entry_id: (entries[h.entry_id].title, entries[h.entry_id].imported) for h in result.hits
                  if h.entry_id in entries and entries[h.entry_id].kind == "procedure"}
        tied = tied_siblings(folded, [(h.entry_id, h.score) for h in result.hits], titles)
        if tied:
            return clarify(asked, [entries[e] for e in tied], result, defaults, conversation)
    sources = []
    for hit in result.hits[:max_sources]:
        sources.append(_source(entries[hit.entry_id], hit.score))
    if entry.kind == "faq":  # cite what the FAQ is about, too
        for related in entry.topics[1:]:
            if related in entries and all(s.id != related for s in sources):
                sources.insert(1, _source(entries[related], top.score))
        sources = sources[: max_sources + 1]
    answer = _answer_entry(asked, entry, aspects, result.confidence, sources, defaults, top.sections, entries)
    if conversation is not None:
        focus = entry.id if entry.kind != "faq" else next((t for t in entry.topics[1:] if t in entries), entry.id)
        conversation.last_entry = focus
    return answer


CLARIFY_TITLE = "Bạn hỏi về thủ tục nào?"
CLARIFY_TEXT = ("Có {n} thủ tục gần giống nhau mà tôi chưa phân biệt được từ câu hỏi của bạn. Bạn bấm nút, hoặc "
                "nhắn số thứ tự của thủ tục bạn cần:")
_NUMBER = re.compile(r"^(?:so |thu |chon |cau )?(\d{1,2})\.?$")


def clarify(asked: Question, siblings: Sequence[Record], result: SearchResult, defaults: Sequence[Link],
            conversation: Conversation | None) -> Answer:
    """Ask which of sibling procedures is meant: numbered choices, the siblings as sources, best first; the
    conversation remembers them so that a number or a button answers the question about the one chosen."""
    scores = {h.entry_id: h.score for h in result.hits}
    numbered = "\n".join(f"{i}. {_title_with_date(e)}" for i, e in enumerate(siblings, 1))
    if conversation is not None:
        conversation.choices = [e.id for e in siblings]
        conversation.choice_aspects = list(asked.aspects)
        conversation.last_entry = None
    return Answer(asked.text, "clarify", title=CLARIFY_TITLE,
                  parts=[("", CLARIFY_TEXT.format(n=len(siblings)) + "\n" + numbered)],
                  sources=[_source(e, scores.get(e.id, 0.0)) for e in siblings], links=list(defaults),
                  confidence=round(result.confidence, 4), aspects=list(asked.aspects),
                  choices=[(f"{i}. {e.title}", e.title) for i, e in enumerate(siblings, 1)])


def chosen_entry(folded: str, offered: Sequence[str], entries: Mapping[str, Record]) -> Record | None:
    """The sibling a reply to a clarification chooses: its number, or its title (what its button sends)."""
    number = _NUMBER.match(folded)
    if number and 1 <= int(number.group(1)) <= len(offered):
        return entries.get(offered[int(number.group(1)) - 1])
    for entry_id in offered:
        if entry_id in entries and " ".join(syllables(entries[entry_id].title)) == folded:
            return entries[entry_id]
    return None


def asks_faq_point(asked: Sequence[str], faq: Record, procedure: Record) -> bool:
    """Whether a question's content words name something that sets an FAQ apart from its procedure ("quá hạn")."""
    phrasings = [faq.title, *faq.questions]
    point = set(content_syllables(" ".join(phrasings))) - set(content_syllables(procedure.title))
    point -= ASPECT_WORDS | FOLLOW_UP_WORDS
    return not point or bool(point & set(asked))


_ENTRY_ID = re.compile(r"\b[a-z0-9]+(?:-[a-z0-9]+)+\b")


def name_entries(text: str, entries: dict[str, Record]) -> str:
    """Curators refer to other entries by id ("xem mục dang-ky-khai-sinh"); citizens read their titles."""
    return _ENTRY_ID.sub(lambda m: f"“{entries[m.group(0)].title}”" if m.group(0) in entries else m.group(0), text)


def _answer_entry(asked: Question, entry: Record, aspects: list[str], confidence: float, sources: list[Source],
                  defaults: Sequence[Link], dense: Mapping[str, float], entries: dict[str, Record] | None = None) -> Answer:
    offered: list[tuple[str, str]] = []
    if entry.kind == "procedure":
        parts = procedure_parts(entry, aspects)
    elif entry.kind == "faq":
        parts = [("", truncate(_summary(entry), SECTION_LIMIT * 2))]
    else:
        parts, offered = document_parts(entry, asked, dense)
    if entries:
        parts = [(heading, name_entries(text, entries)) for heading, text in parts]
    return Answer(asked.text, "answer", title=_title_with_date(entry), parts=parts, sources=sources,
                  links=_links(entry, defaults), confidence=round(confidence, 4), entry_id=entry.id,
                  aspects=aspects, offered=offered)


def document_parts(entry: Record, asked: Question, dense: Mapping[str, float] | None = None
                   ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A plan's, topic's or guide's parts for a question: one or two lines on what the document is, then the
    section(s) that answer it under their heading; or, for the document as a whole, its summary and the names of
    its sections. Also the follow-ups to offer: (label, heading) of the sections not shown."""
    if not entry.sections:
        return [("", truncate(_summary(entry), CARD_LIMIT * 2))], []
    choice = choose_sections(entry, asked, dense)
    if choice.whole:
        parts = [("", truncate(_summary(entry), CARD_LIMIT * 2)),
                 (OVERVIEW_HEADING, overview(entry))]
        return parts, offered_sections(entry, ())
    parts = [("", framing(entry))] if framing(entry) else []
    texts = _sections(entry)
    limit = SECTION_LIMIT if len(choice.headings) == 1 else SECTION_LIMIT * 2 // 3
    for heading in choice.headings:
        if heading in texts:  # a section whose facts have all lapsed ({den_het: …}) is not shown
            parts.append((heading, truncate(focus_subsection(texts[heading], asked, limit), limit)))
    return parts, offered_sections(entry, choice.headings)


def decline(question: str, result: SearchResult, entries: dict[str, Record], defaults: Sequence[Link],
            hotline: dict | None) -> Answer:
    """A polite refusal: say we do not know, offer close matches and the official hotline and portal."""
    text = not_found(hotline)
    suggestions = [_title_with_date(entries[h.entry_id]) for h in result.hits[:3] if result.confidence > 0.05]
    return Answer(question, "decline", parts=[("", text)], links=list(defaults), suggestions=suggestions,
                  confidence=round(result.confidence, 4))


# The national portal's procedure search, given the key words of a question or a procedure's name.
PORTAL_SEARCH = "https://dichvucong.gov.vn/p/home/dvc-tthc-thu-tuc-hanh-chinh.html?keyword="
RELATED_LABEL = "Có thể liên quan (không chắc là thủ tục bạn hỏi):"


def key_terms(question: Question, limit: int = 8) -> str:
    """The question's own words that name its subject, as typed (question words and politeness left out)."""
    words = [w for w in re.findall(r"[\w.]+", question.text) if fold(w).lower() not in STOPWORDS]
    return " ".join(words[:limit])


def portal_search(terms: str) -> Link:
    """A link to search the national portal for these words."""
    return Link("Tìm trên Cổng Dịch vụ công quốc gia", PORTAL_SEARCH + quote_plus(terms[:120]))


def _hotline_text(hotline: dict | None) -> str:
    return f" Bạn cũng có thể gọi {hotline['name']} {hotline['number']}." if hotline else ""


def _related(result: SearchResult, entries: dict[str, Record]) -> list[str]:
    return [_title_with_date(entries[h.entry_id]) for h in result.hits[:3] if h.entry_id in entries]


def not_held(question: Question, result: SearchResult, entries: dict[str, Record], defaults: Sequence[Link],
             hotline: dict | None) -> Answer:
    """The base lacks the procedure asked about: say so, link a portal search for it; near entries only as related."""
    text = ("Thủ tục bạn hỏi hiện chưa có trong dữ liệu của Trợ lý, nên tôi không trả lời để tránh đưa thông tin "
            "không đúng. Bạn có thể tìm thủ tục này trên Cổng Dịch vụ công quốc gia theo đường dẫn bên dưới."
            + _hotline_text(hotline))
    return Answer(question.text, "not_held", parts=[("", text)], links=[portal_search(key_terms(question)), *defaults],
                  suggestions=_related(result, entries), suggestions_label=RELATED_LABEL,
                  confidence=round(result.confidence, 4))


def listed(question: str, hit: ListingHit, result: SearchResult, entries: dict[str, Record], defaults: Sequence[Link],
           hotline: dict | None) -> Answer:
    """A procedure known by name only: its name, its agency and where to look, never details we do not hold."""
    listing = hit.listing
    text = (f"Thủ tục “{listing.name}” (mã {listing.code}) có trên Cổng Dịch vụ công quốc gia"
            + (f", thuộc lĩnh vực của {listing.agency} theo dữ liệu của Cổng (tên bộ có thể đã đổi sau khi sắp xếp "
               "bộ máy năm 2025)" if listing.agency else "")
            + ". Trợ lý chưa có thông tin chi tiết của thủ tục này (hồ sơ, lệ phí, thời hạn), nên bạn hãy xem trên "
            "Cổng theo đường dẫn bên dưới." + _hotline_text(hotline))
    search = portal_search(listing.name)
    source = Source(f"danh-muc:{listing.code}", listing.name, "listing", "", search.url, round(hit.dense, 4),
                    [listing.code])
    return Answer(question, "listed", title=listing.name, parts=[("", text)], sources=[source],
                  links=[search, *defaults], suggestions=_related(result, entries), suggestions_label=RELATED_LABEL,
                  confidence=round(result.confidence, 4))


EMPTY_TEXT = ("Bạn hãy gõ câu hỏi bằng chữ về thủ tục hành chính, ví dụ: "
              "“Làm thẻ căn cước cần giấy tờ gì?” hoặc “dang ky khai sinh o dau”.")
GREETING_TEXT = ("Xin chào! Tôi là Trợ lý cải cách hành chính. Bạn hỏi tôi về thủ tục hành chính "
                 "(khai sinh, kết hôn, thường trú, thẻ căn cước, lý lịch tư pháp…) hoặc về cải cách hành chính; "
                 "tôi sẽ trả lời kèm nguồn và đường dẫn nộp hồ sơ trực tuyến.")
THANKS_TEXT = "Rất vui được giúp bạn! Nếu cần hỏi thêm về thủ tục nào, bạn cứ nhắn nhé."
