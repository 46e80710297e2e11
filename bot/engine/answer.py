"""Compose one channel-agnostic, extractive answer from the retrieved entries."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .knowledge import CAN_CU, DOI_TUONG, HO_SO, KET_QUA, NOI_NOP, PHI, THOI_HAN, TRINH_TU, TRUC_TUYEN
from .phrases import not_found
from .retrieval import DECLINE_BELOW, Hit, SearchResult, content_syllables
from .text import reflow, syllables

# What a question asks about, by folded phrases; matched on whole syllables.
ASPECTS: dict[str, tuple[str, ...]] = {
    HO_SO: ("giay to", "ho so", "can gi", "can nhung gi", "chuan bi", "mang theo", "thanh phan", "can nhung giay"),
    PHI: ("le phi", "phi", "bao nhieu tien", "mat tien", "ton tien", "chi phi", "mien phi", "het bao nhieu",
          "tien phi", "ton bao nhieu", "mat bao nhieu"),
    THOI_HAN: ("bao lau", "may ngay", "thoi han", "bao nhieu ngay", "thoi gian giai quyet", "khi nao co",
               "mat bao lau", "lau khong", "bao gio co", "trong bao lau"),
    NOI_NOP: ("o dau", "noi nop", "nop o", "lam o", "co quan nao", "cho nao", "nop dau", "lam dau", "di dau",
              "nop tai", "lam tai"),
    TRUC_TUYEN: ("online", "truc tuyen", "qua mang", "tren mang", "internet", "tai nha", "tren dien thoai",
                 "qua app", "qua ung dung"),
    CAN_CU: ("can cu", "luat nao", "nghi dinh nao", "quy dinh nao", "van ban nao", "co so phap ly", "phap ly",
             "theo luat", "quy dinh o dau"),
    TRINH_TU: ("cac buoc", "trinh tu", "the nao", "lam sao", "nhu the nao", "quy trinh", "nhung buoc",
               "cach lam", "lam the nao", "thu tuc gom"),
    DOI_TUONG: ("dieu kien", "ai duoc", "doi tuong", "co duoc khong"),
    KET_QUA: ("nhan duoc gi", "ket qua"),
}
# Phrases that name the act of filing, not the documents: "nộp hồ sơ online" asks how to file online.
NEUTRAL = ("nop ho so", "tra cuu ho so", "ho so da nop", "ho so cua toi", "theo doi ho so")
ASPECT_WORDS = frozenset(s for phrases in ASPECTS.values() for p in phrases for s in p.split())
CARD = (HO_SO, THOI_HAN, PHI, NOI_NOP)
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


@dataclass
class Link:
    """A link to an official service."""

    title: str
    url: str


# What an answer is, each kind made in one place: "answer" (from the knowledge base), "decline" (nothing found sure
# enough: `decline`), "greeting", "thanks" and "empty" (`compose_answer`, before any search), "error" (a fault:
# `Assistant.ask`, the handoff), "limited" (over the per-user rate: the desk), "handoff" (a ticket for staff opened).
Kind = Literal["answer", "decline", "greeting", "thanks", "empty", "error", "limited", "handoff"]


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
    confidence: float = 0.0
    entry_id: str | None = None
    aspects: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """True when the text answers from the knowledge base (a greeting, an apology or a decline does not)."""
        return self.kind == "answer"

    @property
    def declined(self) -> bool:
        """True when the bot looked and said it does not know (kind "decline")."""
        return self.kind == "decline"


@dataclass
class Conversation:
    """What a chat remembers between turns: the entry last talked about."""

    last_entry: str | None = None


def detect_aspects(question: str) -> list[str]:
    """The sections of a procedure a question asks for, in card order."""
    folded = " " + " ".join(syllables(question)) + " "
    for phrase in NEUTRAL:
        folded = folded.replace(f" {phrase} ", " _ ")
    found = [name for name, phrases in ASPECTS.items() if any(f" {p} " in folded for p in phrases)]
    if TRUC_TUYEN in found and NOI_NOP in found:
        found.remove(NOI_NOP)  # "nộp online ở đâu" asks for the online link
    return found


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


def _title_with_date(entry: dict) -> str:
    if entry["kind"] == "plan" and entry["date"]:
        return f"{entry['title']} (ban hành năm {entry['date'][:4]})"
    return entry["title"]


def _sections(entry: dict) -> dict[str, str]:
    return {heading: reflow(text) for heading, text in entry["sections"] or []}


def _source(entry: dict, score: float) -> Source:
    return Source(entry["id"], _title_with_date(entry), entry["kind"], entry["date"] or "", entry["source_url"] or "",
                  round(score, 4), list(entry["topics"] or []))


def _links(entry: dict, defaults: Sequence[Link]) -> list[Link]:
    links = []
    if entry.get("online"):
        links.append(Link(entry["online"]["title"], entry["online"]["url"]))
    for link in defaults:
        if all(link.url != x.url for x in links):
            links.append(link)
    return links


def procedure_parts(entry: dict, aspects: Sequence[str]) -> list[tuple[str, str]]:
    """The sections asked for, or a short card (what, documents, time, fee, where) when none is."""
    sections = _sections(entry)
    wanted = [a for a in aspects if a in sections]
    if wanted:
        return [(a, truncate(sections[a], SECTION_LIMIT)) for a in wanted[:2]]
    parts = [("", truncate(reflow(entry["summary"]), CARD_LIMIT))]
    for heading in CARD:
        if heading in sections:
            parts.append((heading, truncate(sections[heading], CARD_LIMIT)))
    return parts


def compose_answer(result: SearchResult, entries: dict[str, dict], chunk_text: Sequence[str],
                   defaults: Sequence[Link], hotline: dict | None, conversation: Conversation | None = None,
                   max_sources: int = 3) -> Answer:
    """Turn search results into an answer: the part asked for first, then sources and links; or decline."""
    question = result.question
    folded = " ".join(syllables(question))
    if not folded:
        return Answer(question, "empty", parts=[("", EMPTY_TEXT)], links=list(defaults))
    if GREETING.match(folded):
        return Answer(question, "greeting", parts=[("", GREETING_TEXT)], links=list(defaults))
    if THANKS.match(folded):
        return Answer(question, "thanks", parts=[("", THANKS_TEXT)])

    aspects = detect_aspects(question)
    own = [s for s in content_syllables(question) if s not in ASPECT_WORDS and s not in FOLLOW_UP_WORDS]
    if conversation and conversation.last_entry in entries and aspects and not own:
        entry = entries[conversation.last_entry]
        return _answer_entry(question, entry, aspects, result.confidence, [_source(entry, 1.0)], defaults,
                             chunk_text, -1, entries)

    if not result.hits or result.confidence < DECLINE_BELOW:
        return decline(question, result, entries, defaults, hotline)

    top = result.hits[0]
    entry = entries[top.entry_id]
    if entry["kind"] == "faq" and aspects:
        # "khai sinh ở đâu" found an FAQ about doing it online: the procedure's own section answers better.
        asked_by_faq = {a for q in (entry["meta"] or {}).get("cau_hoi", []) for a in detect_aspects(q)}
        procedure = next((entries[t] for t in entry["topics"][1:]
                          if t in entries and entries[t]["kind"] == "procedure"), None)
        if procedure and not asked_by_faq & set(aspects) and any(a in _sections(procedure) for a in aspects):
            lead = Hit(entry_id=procedure["id"], score=top.score)
            result.hits = [lead] + [h for h in result.hits if h.entry_id != procedure["id"]]
            top, entry = lead, procedure
    main = entry["topics"][1] if entry["kind"] == "faq" and len(entry["topics"]) > 1 else None
    if main in entries and entries[main]["kind"] == "procedure":  # the FAQ is first of all about a procedure
        procedure = entries[main]
        if not asks_faq_point(question, entry, procedure):
            # "đăng ký khai sinh" matched the FAQ on late registration about as well as the procedure: a question
            # that names none of the FAQ's own point is about the procedure in general.
            lead = Hit(entry_id=procedure["id"], score=top.score)
            result.hits = [lead] + [h for h in result.hits if h.entry_id != procedure["id"]]
            top, entry = lead, procedure
    sources = []
    for hit in result.hits[:max_sources]:
        sources.append(_source(entries[hit.entry_id], hit.score))
    if entry["kind"] == "faq":  # cite what the FAQ is about, too
        for related in entry["topics"][1:]:
            if related in entries and all(s.id != related for s in sources):
                sources.insert(1, _source(entries[related], top.score))
        sources = sources[: max_sources + 1]
    answer = _answer_entry(question, entry, aspects, result.confidence, sources, defaults, chunk_text, top.chunk,
                           entries)
    if conversation is not None:
        focus = entry["id"] if entry["kind"] != "faq" else next(
            (t for t in entry["topics"][1:] if t in entries), entry["id"])
        conversation.last_entry = focus
    return answer


def asks_faq_point(question: str, faq: dict, procedure: dict) -> bool:
    """Whether a question names something that sets an FAQ apart from its procedure ("quá hạn", "ông bà")."""
    phrasings = [faq["title"], *(faq["meta"] or {}).get("cau_hoi", [])]
    point = set(content_syllables(" ".join(phrasings))) - set(content_syllables(procedure["title"]))
    point -= ASPECT_WORDS | FOLLOW_UP_WORDS
    return not point or bool(point & set(content_syllables(question)))


_ENTRY_ID = re.compile(r"\b[a-z0-9]+(?:-[a-z0-9]+)+\b")


def name_entries(text: str, entries: dict[str, dict]) -> str:
    """Curators refer to other entries by id ("xem mục dang-ky-khai-sinh"); citizens read their titles."""
    return _ENTRY_ID.sub(lambda m: f"“{entries[m.group(0)]['title']}”" if m.group(0) in entries else m.group(0), text)


def _answer_entry(question: str, entry: dict, aspects: list[str], confidence: float, sources: list[Source],
                  defaults: Sequence[Link], chunk_text: Sequence[str], chunk: int,
                  entries: dict[str, dict] | None = None) -> Answer:
    if entry["kind"] == "procedure":
        parts = procedure_parts(entry, aspects)
    elif entry["kind"] == "faq":
        parts = [("", truncate(reflow(entry["summary"]), SECTION_LIMIT * 2))]
    else:
        parts = [("", truncate(reflow(entry["summary"]), CARD_LIMIT * 2))]
        if chunk >= 0:
            heading, _, body = chunk_text[chunk].partition("\n")
            section = heading.split(" — ", 1)[1] if " — " in heading else ""
            if section:
                full = _sections(entry).get(section, body)
                parts.append((section, truncate(full, SECTION_LIMIT)))
    if entries:
        parts = [(heading, name_entries(text, entries)) for heading, text in parts]
    return Answer(question, "answer", title=_title_with_date(entry), parts=parts, sources=sources,
                  links=_links(entry, defaults), confidence=round(confidence, 4), entry_id=entry["id"],
                  aspects=aspects)


def decline(question: str, result: SearchResult, entries: dict[str, dict], defaults: Sequence[Link],
            hotline: dict | None) -> Answer:
    """A polite refusal: say we do not know, offer close matches and the official hotline and portal."""
    text = not_found(hotline)
    suggestions = [_title_with_date(entries[h.entry_id]) for h in result.hits[:3] if result.confidence > 0.05]
    return Answer(question, "decline", parts=[("", text)], links=list(defaults), suggestions=suggestions,
                  confidence=round(result.confidence, 4))


EMPTY_TEXT = ("Bạn hãy gõ câu hỏi bằng chữ về thủ tục hành chính, ví dụ: "
              "“Làm thẻ căn cước cần giấy tờ gì?” hoặc “dang ky khai sinh o dau”.")
GREETING_TEXT = ("Xin chào! Tôi là Trợ lý cải cách hành chính. Bạn hỏi tôi về thủ tục hành chính "
                 "(khai sinh, kết hôn, thường trú, thẻ căn cước, lý lịch tư pháp…) hoặc về cải cách hành chính; "
                 "tôi sẽ trả lời kèm nguồn và đường dẫn nộp hồ sơ trực tuyến.")
THANKS_TEXT = "Rất vui được giúp bạn! Nếu cần hỏi thêm về thủ tục nào, bạn cứ nhắn nhé."
