"""Split knowledge entries into the pieces that are embedded and searched."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .knowledge import Entry, Listing, apply_until

MAX_CHARS = 800
MAX_PIECES = 4  # of one section: long official lists are shown whole but only their start is embedded
IMPORTED_PIECES = 2
# Sections of imported records that are generated boilerplate (same wording everywhere): searched, not embedded.
IMPORTED_UNEMBEDDED = frozenset({"Thời hạn giải quyết", "Phí, lệ phí", "Nộp trực tuyến"})
NAME = "Tên"
QUESTION = "Câu hỏi"
SUMMARY = "Tóm tắt"
ANSWER = "Trả lời"
LISTING = "Danh mục"  # the name of a procedure known by name only
LISTING_PREFIX = "danh-muc:"  # the chunk entry id of a listing: danh-muc:<code>


@dataclass(frozen=True)
class Chunk:
    """A searchable piece of an entry: it knows its entry, its section and the entry's title."""

    entry_id: str
    section: str
    text: str  # what is embedded (before the model's prefix)
    role: str = "passage"  # 'query' for question-like text (e5's symmetric mode), else 'passage'


def split_text(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Cut text into pieces of at most `limit` characters at paragraph, line or sentence ends."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    pieces: list[str] = []
    current = ""
    units = [u for u in re.split(r"(?<=\n)|(?<=[.;:!?])\s+", text) if u and u.strip()]
    for unit in units:
        while len(unit) > limit:  # one very long sentence: cut at a space
            cut = unit.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            if current:
                pieces.append(current.strip())
                current = ""
            pieces.append(unit[:cut].strip())
            unit = unit[cut:]
        if len(current) + len(unit) + 1 > limit and current.strip():
            pieces.append(current.strip())
            current = ""
        current += unit if current.endswith("\n") or not current else " " + unit
    if current.strip():
        pieces.append(current.strip())
    return pieces


def _strip_markdown(text: str) -> str:
    text = apply_until(text, dt.date.min)  # a fact with an end date is embedded with it, in words
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)  # [label](url) -> label
    text = re.sub(r"[*_`]+", "", text)
    return re.sub(r"^\s*(?:[-+]|\d+[.)])\s+", "", text, flags=re.M)


def name_text(entry: Entry) -> str:
    """The entry's name as a citizen would say it: title, other names, and its field."""
    parts = [entry.title]
    keywords = entry.values("tu_khoa")
    if keywords:
        parts.append("(" + ", ".join(keywords) + ")")
    if entry.text("so_hieu"):
        parts.append(entry.text("so_hieu"))
    return " ".join(parts)


def chunk_entry(entry: Entry) -> list[Chunk]:
    """Chunks of one entry: its name (and FAQ questions) in query form, then its sections as passages."""
    chunks: list[Chunk] = []
    if entry.kind == "faq":
        for question in entry.values("cau_hoi"):
            chunks.append(Chunk(entry.id, QUESTION, question, role="query"))
        for piece in split_text(_strip_markdown(entry.summary)):
            chunks.append(Chunk(entry.id, ANSWER, f"{entry.title}\n{piece}"))
        return chunks
    chunks.append(Chunk(entry.id, NAME, name_text(entry), role="query"))
    for piece in split_text(_strip_markdown(entry.summary)):
        chunks.append(Chunk(entry.id, SUMMARY, f"{entry.title}\n{piece}"))
    imported = entry.imported
    for section in entry.sections:
        if imported and section.heading in IMPORTED_UNEMBEDDED:
            continue
        for piece in split_text(_strip_markdown(section.text))[: IMPORTED_PIECES if imported else MAX_PIECES]:
            chunks.append(Chunk(entry.id, section.heading, f"{entry.title} — {section.heading}\n{piece}"))
    return chunks


def listing_chunk(listing: Listing) -> Chunk:
    """A procedure known by name only: its name, searched like an entry's name (after every entry's chunks)."""
    return Chunk(LISTING_PREFIX + listing.code, LISTING, listing.name, role="query")
