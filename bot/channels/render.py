"""Render an Answer for a channel: plain text and JSON (Telegram and Zalo build on these)."""

from __future__ import annotations

from bot.engine.answer import Answer, Source
from bot.engine.text import plain

DATE_LABELS = {"procedure": "kiểm tra ngày", "plan": "ban hành ngày", "topic": "cập nhật ngày", "faq": "kiểm tra ngày"}


def format_date(iso: str) -> str:
    """2026-11-21 → 21/11/2026, as Vietnamese readers write dates."""
    parts = iso.split("-")
    return "/".join(reversed(parts)) if len(parts) == 3 else iso


def cite(source: Source) -> str:
    """'Title (kiểm tra ngày 21/11/2026)'; a date known only by its year reads 'ban hành năm 2025'."""
    if len(source.date) == 4:
        return f"{source.title} ({DATE_LABELS.get(source.kind, 'ngày').replace('ngày', 'năm')} {source.date})"
    if source.date:
        return f"{source.title} ({DATE_LABELS.get(source.kind, 'ngày')} {format_date(source.date)})"
    return source.title


def body_text(answer: Answer) -> str:
    """The answer's own text: title and parts, without sources."""
    lines = [answer.title] if answer.title else []
    for heading, text in answer.parts:
        lines.append(f"{heading}:\n{text}" if heading else text)
    return plain("\n\n".join(lines))


def short(text: str, limit: int = 60) -> str:
    """A button label (or payload) within `limit` characters, marked with … where cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def to_text(answer: Answer, links: bool = True) -> str:
    """Plain text for a terminal: the answer first, then suggestions, sources and (unless a channel shows them as
    buttons) links."""
    blocks = [body_text(answer)]
    if answer.suggestions:
        blocks.append(answer.suggestions_label + "\n" + "\n".join(f"- {s}" for s in answer.suggestions))
    if answer.sources:
        lines = []
        for s in answer.sources:
            lines.append(f"- {cite(s)}" + (f"\n  {s.url}" if s.url else ""))
        blocks.append("Nguồn:\n" + "\n".join(lines))
    if links and answer.links:
        blocks.append("Dịch vụ công trực tuyến:\n" + "\n".join(f"- {x.title}: {x.url}" for x in answer.links))
    return "\n\n".join(b for b in blocks if b)


def to_json(answer: Answer) -> dict:
    """The JSON contract of `python -m bot ask --json`."""
    return {
        "question": answer.question,
        "answer": body_text(answer),
        "declined": answer.declined,
        "kind": answer.kind,
        "confidence": answer.confidence,
        "sources": [
            {"id": s.id, "topics": s.topics, "title": s.title, "date": s.date, "score": s.score, "url": s.url}
            for s in answer.sources
        ],
        "links": [{"title": x.title, "url": x.url} for x in answer.links],
        "suggestions": answer.suggestions,
    }
