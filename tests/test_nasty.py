"""Bad input: a corpus of nasty messages and random text through the core, the desk and the JSON CLI.

Every message gets an answer or a polite Vietnamese decline, never a crash or an apology for an error; the JSON
is valid UTF-8; nothing the citizen typed comes back as markup. `CCHC_FUZZ_EXAMPLES` sets how many random
messages each property tries (60 in `make test`; see RELIABILITY.md for the bigger run).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.channels.render import body_text, cite, to_json, to_text
from bot.config import ROOT
from bot.engine.answer import Answer, Link, Source
from bot.engine.text import clean
from bot.service.desk import LONG_NOTE, Desk
from tests.conftest import DATA

CORPUS_FILE = DATA / "nasty.tsv"
EXAMPLES = int(os.environ.get("CCHC_FUZZ_EXAMPLES", "60"))
# What the engine may say to any message: never "error". A question that matches sibling procedures equally is
# asked back ("clarify"); one about a procedure the base does not hold, or holds by name only, says so.
OK_KINDS = {"answer", "decline", "empty", "greeting", "thanks", "clarify", "not_held", "listed"}
# Letters only Vietnamese writes: every message the bot says contains some.
VIETNAMESE = re.compile(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", re.IGNORECASE)
# What an attacker's message would carry into a rendered page or chat if it were echoed unescaped.
MARKUP = ("<script", "<img", "<svg", "<iframe", "<a href", "onerror", "onload", "javascript:", "tg://", "evil.example",
          "<tg-spoiler", "</textarea", "set-cookie", "{{7*7}}", "${jndi")
UNSAFE_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]")


def load_corpus(path: Path = CORPUS_FILE) -> list[tuple[str, str]]:
    """(category, text) pairs: each line is `category <TAB> JSON string <TAB> times repeated`."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        category, literal, times = line.split("\t")
        text = json.loads(literal)
        assert isinstance(text, str), f"{path.name}:{n}: not a JSON string"
        out.append((category, text * int(times)))
    return out


CORPUS = load_corpus()


@pytest.fixture(scope="module")
def assistant(shipped):
    """The shipped knowledge base, built once per session (the CLI subprocess reads the same index)."""
    return shipped


def check(answer: Answer, typed: str) -> None:
    """What every answer to any message must satisfy."""
    assert answer.kind in OK_KINDS, (answer.kind, answer.parts)
    if answer.kind == "clarify":  # it offers at least two procedures of the base to choose from, each a source
        assert len(answer.choices) >= 2 and len(answer.sources) == len(answer.choices), answer.choices
    payload = json.dumps(to_json(answer), ensure_ascii=False)
    assert json.loads(payload) == to_json(answer)
    payload.encode("utf-8")  # no lone surrogate reaches a channel
    shown = to_text(answer)
    assert VIETNAMESE.search(body_text(answer)), shown
    assert len(answer.question) <= 1000
    assert not UNSAFE_CHARS.search(answer.question), ascii(answer.question[:80])
    assert not UNSAFE_CHARS.search(shown)
    lowered = shown.lower()
    for marker in MARKUP:
        if marker in typed.lower():
            assert marker not in lowered, (marker, shown[:300])
    assert unicodedata.is_normalized("NFC", answer.question)


def test_the_corpus_covers_every_kind_of_nasty_input():
    categories = {c for c, _ in CORPUS}
    assert categories >= {"unicode", "decomposed", "zero-width", "control", "rtl", "long", "emoji", "punctuation",
                          "sql", "html", "markdown", "english"}
    assert sum(len(t.encode("utf-8", "surrogatepass")) >= 100_000 for _, t in CORPUS) >= 4  # 100 KB messages


@pytest.mark.parametrize("category,text", CORPUS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CORPUS)])
def test_core_answers_every_nasty_message(assistant, category, text):
    check(assistant.ask(text), text)


def test_nasty_messages_in_one_conversation_through_the_desk(assistant):
    """One citizen sends the whole corpus in a row, and another asks a real question between every two."""
    desk = Desk(assistant, rate_count=0)
    expected = assistant.ask("đăng ký khai sinh cần giấy tờ gì").entry_id
    for i, (category, text) in enumerate(CORPUS):
        reply = desk.ask("telegram", "attacker", text)
        check(reply.answer, text)
        assert not reply.limited
        if len(clean(text, limit=None)) > desk.max_chars:
            assert LONG_NOTE.format(limit=desk.max_chars) in reply.notes
        for label, question in reply.follow_ups:
            assert label and VIETNAMESE.search(question)
        honest = desk.ask("telegram", f"citizen-{i}", "đăng ký khai sinh cần giấy tờ gì")
        assert honest.answer.kind == "answer" and honest.answer.entry_id == expected, category
    desk.close()


def test_nasty_user_ids_and_channels_through_the_async_desk(assistant):
    desk = Desk(assistant, rate_count=3, rate_seconds=60)
    users = ["", "\x00", "🙂" * 1000, "'; DROP TABLE users; --", "\ud800", "../../etc/passwd", "a:b:c"]

    async def run():
        return [await desk.aask(u, u, "lệ phí đăng ký kết hôn") for u in users for _ in range(4)]

    replies = asyncio.run(run())
    desk.close()
    for i, reply in enumerate(replies):
        if i % 4 == 3:  # the fourth question within a minute is over the limit, politely
            assert reply.limited and VIETNAMESE.search(body_text(reply.answer))
        else:
            check(reply.answer, "")
            assert reply.answer.entry_id == "dang-ky-ket-hon"


def test_json_cli_answers_the_whole_corpus_in_one_process(assistant):
    """The corpus on standard input, one message a line, plus bytes that are not UTF-8 at all."""
    lines = [text.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogatepass") for _, text in CORPUS]
    lines += [b"\xff\xfe khai sinh \xc3\x28 \xa0\xa1", b"\xed\xa0\x80 surrogate bytes", b"\xc0\xaf\xe0\x80\xaf"]
    env = dict(os.environ, CCHC_CONFIG=str(assistant.cfg.base / "config.toml"))
    env.pop("PYTHONIOENCODING", None)
    env.pop("PYTHONUTF8", None)
    result = subprocess.run([sys.executable, "-m", "bot", "ask", "--json"], cwd=ROOT, input=b"\n".join(lines) + b"\n",
                            capture_output=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")[-2000:]
    out = result.stdout.decode("utf-8").splitlines()  # strict: the output is valid UTF-8
    assert len(out) == len(lines)
    for raw, line in zip(lines, out):
        payload = json.loads(line)
        assert payload["kind"] in OK_KINDS, (raw[:80], payload)
        assert VIETNAMESE.search(payload["answer"]) and not UNSAFE_CHARS.search(payload["answer"])
        typed = raw.decode("utf-8", "replace").lower()
        for marker in MARKUP:
            if marker in typed:
                assert marker not in payload["answer"].lower()


# --------------------------------------------------------------------------- random messages (hypothesis)

FRAGMENTS = [text[:200] for _, text in CORPUS] + [
    "đăng ký khai sinh", "làm thẻ căn cước", "lệ phí", "ở đâu", "dang ky ket hon", "CCCD", "sổ đỏ", "?", "<b>", "</",
    "&amp;", "&#x202e;", "\u0301", "\u200d", "\U0001F600", "\x00", "\r\n", "'", '"', "--", "*", "`", "[", "](",
]
messages = st.one_of(
    st.text(max_size=300),  # any Unicode scalar, including controls and unassigned code points
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), max_size=12).map("".join),
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map(" ".join).map(
        lambda s: unicodedata.normalize("NFD", s)),
    st.text(st.characters(codec="utf-8"), min_size=1000, max_size=3000),
)
fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fuzz
@given(text=messages)
def test_core_answers_any_text(assistant, text):
    check(assistant.ask(text), text)


@fuzz
@given(texts=st.lists(messages, min_size=2, max_size=4), user=st.text(max_size=20))
def test_desk_answers_any_conversation(assistant, texts, user):
    desk = Desk(assistant, rate_count=0)
    try:
        for text in texts:
            reply = desk.ask("web", user, text)
            check(reply.answer, text)
    finally:
        desk.close()


@settings(max_examples=EXAMPLES * 10, deadline=None, database=None)
@given(text=st.text(max_size=2000) | st.lists(st.sampled_from(FRAGMENTS), max_size=20).map("".join),
       limit=st.integers(min_value=1, max_value=1000))
def test_clean_leaves_no_control_character_and_respects_the_limit(text, limit):
    out = clean(text, limit=limit)
    assert len(out) <= limit
    assert out == out.strip() and "  " not in out and "\n" not in out
    assert not UNSAFE_CHARS.search(out)
    assert unicodedata.is_normalized("NFC", out)


safe_text = st.text(max_size=60)
answers = st.builds(
    Answer,
    question=safe_text,
    kind=st.sampled_from(sorted(OK_KINDS)),
    title=safe_text,
    parts=st.lists(st.tuples(safe_text, safe_text), max_size=3),
    sources=st.lists(st.builds(Source, id=safe_text, title=safe_text, kind=st.sampled_from(["procedure", "plan", "x"]),
                               date=st.sampled_from(["", "2025", "2026-11-21", "31/12", "--"]) | safe_text,
                               url=safe_text, score=st.floats(allow_nan=False, allow_infinity=False),
                               topics=st.lists(safe_text, max_size=3)), max_size=3),
    links=st.lists(st.builds(Link, title=safe_text, url=safe_text), max_size=3),
    suggestions=st.lists(safe_text, max_size=3),
    confidence=st.floats(min_value=0, max_value=1),
)


@settings(max_examples=EXAMPLES * 5, deadline=None, database=None)
@given(answer=answers)
def test_renderers_accept_any_answer(answer):
    payload = to_json(answer)
    assert json.loads(json.dumps(payload, ensure_ascii=False)) == payload
    text = to_text(answer)
    assert isinstance(text, str)
    for source in answer.sources:
        assert source.title in cite(source)
