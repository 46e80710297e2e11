"""The one renderer: an answer's knowledge Markdown as plain text, JSON, Telegram HTML and Zalo text.

Knowledge files write light Markdown (bold, links, bullets). Every channel shows an `Answer` (or the desk's `Reply`)
through this module and only sends what it returns: the terminal and `ask` print `to_text`, `ask --json` and the web
chat send `to_json`, Telegram sends `telegram_html` cut by `split_html`, Zalo sends `zalo_text` cut by `split_text`.
All of it is pure.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

from bot.engine.answer import Answer, Source

if TYPE_CHECKING:
    from bot.service.desk import Reply

DATE_LABELS = {"procedure": "kiểm tra ngày", "plan": "ban hành ngày", "topic": "cập nhật ngày", "faq": "kiểm tra ngày"}


TELEGRAM_LIMIT = 4096  # characters of one Telegram message (telegram.constants.MessageLimit.MAX_TEXT_LENGTH)
ZALO_LIMIT = 2000  # characters of one Zalo text message

_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")
_MD_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")


def plain(markdown: str) -> str:
    """Markdown to plain text: no emphasis markers, links written as 'label (url)'."""
    text = _EMPHASIS.sub(r"\2", markdown)
    return _MD_LINK.sub(lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} ({m.group(2)})", text)


def format_date(iso: str) -> str:
    """2026-11-21 → 21/11/2026, as Vietnamese readers write dates."""
    parts = iso.split("-")
    return "/".join(reversed(parts)) if len(parts) == 3 else iso


PORTAL_DATA = "theo dữ liệu Cổng Dịch vụ công quốc gia"


def cite(source: Source) -> str:
    """'Title (kiểm tra ngày 21/11/2026)'; a date known only by its year reads 'ban hành năm 2025'; an imported record
    reads 'theo dữ liệu Cổng Dịch vụ công quốc gia' (with the data's date when the import was given it), never the
    day it was imported as if someone had checked it then."""
    if source.imported:
        return f"{source.title} ({PORTAL_DATA}" + (f", ngày {format_date(source.date)})" if source.date else ")")
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
    """The JSON contract of `python -m bot ask --json`.

    Its `declined` is ../shared/eval/score.py's: true unless the text answers from the knowledge base, so a
    greeting, an apology, a rate-limit note or a handoff never counts as an answer to an out-of-scope question;
    `kind` says which it was. A clarification ("clarify") is not a decline: it offers the sibling procedures found,
    as its sources in the order offered, for the citizen to choose from."""
    return {
        "question": answer.question,
        "answer": body_text(answer),
        "declined": not answer.answered and answer.kind != "clarify",
        "kind": answer.kind,
        "confidence": answer.confidence,
        "sources": [
            {"id": s.id, "topics": s.topics, "title": s.title, "date": s.date, "score": s.score, "url": s.url}
            for s in answer.sources
        ],
        "links": [{"title": x.title, "url": x.url} for x in answer.links],
        "suggestions": answer.suggestions,
    }


# --- Telegram HTML ----------------------------------------------------------------------------------------------

def escape(text: str) -> str:
    """Text as Telegram HTML shows it literally (quotes need no escaping outside attributes)."""
    return html.escape(text, quote=False)


# Applied to escaped text, so a label or URL never holds a raw '<' or a newline.
_BOLD = re.compile(r"(\*\*|__)([^\n]+?)\1")
_LINK = re.compile(r"\[([^\]\n<]+)\]\((https?://[^)\s\"<]+)\)")
_BULLET = re.compile(r"^[-*] ", re.M)


def knowledge_html(text: str) -> str:
    """Knowledge text (light Markdown) as Telegram HTML: everything escaped first, then bold, links and bullets."""
    text = escape(text)
    text = _BOLD.sub(r"<b>\2</b>", text)
    text = _LINK.sub(lambda m: f'<a href="{m.group(2).replace(chr(34), "&quot;")}">{m.group(1)}</a>', text)
    return _BULLET.sub("• ", text)


def telegram_html(reply: Reply) -> str:
    """A desk reply as Telegram HTML: notes, title, parts, suggestions and sources with dates; all text escaped."""
    answer = reply.answer
    blocks = [f"<i>{escape(note)}</i>" for note in reply.notes]
    if answer.title:
        blocks.append(f"<b>{escape(answer.title)}</b>")
    for heading, text in answer.parts:
        blocks.append(f"<b>{escape(heading)}:</b>\n{knowledge_html(text)}" if heading else knowledge_html(text))
    if answer.suggestions:
        blocks.append(f"<b>{escape(answer.suggestions_label)}</b>\n" + "\n".join(f"• {escape(s)}" for s in answer.suggestions))
    if answer.sources:
        lines = []
        for source in answer.sources:
            dated = escape(cite(source)[len(source.title):])
            title = escape(source.title)
            if source.url.startswith(("http://", "https://")):
                title = f'<a href="{html.escape(source.url, quote=True)}">{title}</a>'
            lines.append(f"• {title}{dated}")
        blocks.append("<b>Nguồn:</b>\n" + "\n".join(lines))
    return "\n\n".join(b for b in blocks if b.strip())


_TOKEN = re.compile(r"<(/?)([a-zA-Z][\w-]*)[^>]*>|&#?\w+;|\n|[ \t]+|[^<&\s]+|[<&]")


def split_html(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Cut HTML into messages of at most `limit` characters at a line (else a word) boundary, never inside a tag or
    an entity; elements open at a cut are closed before it and opened again after it."""
    if len(text) <= limit:
        return [text] if text.strip() else []
    tokens: list[str] = []
    stacks: list[tuple[tuple[str, str], ...]] = []  # elements open after each token: (name, opening tag)
    stack: tuple[tuple[str, str], ...] = ()
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        if m.group(2) and not token.endswith("/>"):
            if m.group(1):
                names = [name for name, _ in stack]
                if m.group(2) in names:
                    stack = stack[: len(names) - 1 - names[::-1].index(m.group(2))]
            else:
                stack = (*stack, (m.group(2), token))
        pieces = [token] if len(token) <= limit // 4 or token.startswith("<") else [
            token[i:i + limit // 4] for i in range(0, len(token), limit // 4)]
        for piece in pieces:
            tokens.append(piece)
            stacks.append(stack)

    def closing(open_: tuple[tuple[str, str], ...]) -> str:
        return "".join(f"</{name}>" for name, _ in reversed(open_))

    chunks: list[str] = []
    start, open_at_start = 0, ()  # type: int, tuple[tuple[str, str], ...]
    while start < len(tokens):
        prefix = "".join(tag for _, tag in open_at_start)
        size, end = len(prefix), start
        newline = space = -1  # the last line and word boundaries that fit, and the size before them
        newline_at = 0
        while end < len(tokens):
            if tokens[end] == "\n":
                newline, newline_at = end, size
            elif tokens[end].isspace():
                space = end
            if size + len(tokens[end]) + len(closing(stacks[end])) > limit:
                break
            size += len(tokens[end])
            end += 1
        if end == len(tokens):
            cut, resume = end, end
        elif newline > start and newline_at * 2 >= limit:  # a line boundary in the second half of the message
            cut, resume = newline, newline + 1
        elif space > start:
            cut, resume = space, space + 1
        elif newline > start:
            cut, resume = newline, newline + 1
        else:  # one word longer than a message: cut it
            cut = resume = max(end, start + 1)
        open_at_cut = stacks[cut - 1] if cut > 0 else ()
        chunk = (prefix + "".join(tokens[start:cut]) + closing(open_at_cut)).strip()
        if html_visible(chunk).strip():
            chunks.append(chunk)
        start, open_at_start = resume, open_at_cut
    return chunks


def html_visible(text: str) -> str:
    """What a reader sees of Telegram HTML (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


# --- Zalo text --------------------------------------------------------------------------------------------------

def zalo_text(reply: Reply) -> str:
    """A desk reply as Zalo text: notes, the answer, suggestions and cited sources with their links (the online
    services go on buttons)."""
    return "\n\n".join(b for b in [*reply.notes, to_text(reply.answer, links=False)] if b)


def split_text(text: str, limit: int = ZALO_LIMIT) -> list[str]:
    """Cut text into pieces within `limit` characters, at paragraph, then line, then word boundaries."""
    text = text.strip()
    pieces: list[str] = []
    while len(text) > limit:
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = text.rfind(sep, 0, limit)
            if cut > limit // 3:
                break
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces
