"""The public service desk every channel talks to: one assistant, a conversation per citizen, limits, logging.

Channels (terminal, Telegram, Zalo, web) turn their messages into `Desk.ask(channel, user, text)` calls and
render the `Reply`. Answering is CPU work on one encoder: async channels call `await desk.aask(...)`, which runs
it on the desk's single worker thread, so questions are answered one after another and the event loop stays free.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bot.engine.answer import Answer, Conversation
from bot.engine.knowledge import HO_SO, NOI_NOP, PHI, THOI_HAN, TRUC_TUYEN
from bot.engine.phrases import BUSY
from bot.engine.text import clean, cut_words

from .handoff import BUTTON as HANDOFF_BUTTON
from .handoff import is_request as is_handoff_request

# Follow-up buttons: the section a button asks for, its short label, and the question it stands for (about the
# procedure last discussed, through the conversation).
FOLLOW_UPS: tuple[tuple[str, str, str], ...] = (
    (HO_SO, "Hồ sơ", "Cần những giấy tờ gì?"),
    (PHI, "Lệ phí", "Lệ phí bao nhiêu?"),
    (THOI_HAN, "Thời hạn", "Thời hạn giải quyết bao lâu?"),
    (NOI_NOP, "Nơi nộp", "Nộp hồ sơ ở đâu?"),
    (TRUC_TUYEN, "Nộp trực tuyến", "Nộp trực tuyến ở đâu?"),
)
logger = logging.getLogger("bot.desk")
LONG_NOTE = "Tin nhắn của bạn dài quá {limit} ký tự; tôi chỉ đọc phần đầu."
T = TypeVar("T")


class QuestionSink(Protocol):
    """Where answered questions go (the question log); returns the stored question's id."""

    def record(self, *, channel: str, user: str, question: str, answer: Answer, latency_ms: float) -> int | None:
        ...

    def feedback(self, question_id: int, value: int) -> bool:
        ...


@dataclass
class Reply:
    """One answer as a channel receives it."""

    answer: Answer
    question_id: int | None = None  # for feedback buttons; None when nothing was logged
    notes: list[str] = field(default_factory=list)  # said before the answer (long message cut, …)
    follow_ups: list[tuple[str, str]] = field(default_factory=list)  # (label, question) buttons
    limited: bool = False  # refused by the per-user rate limit; nothing was answered


class RateLimit:
    """At most `count` questions per `seconds` per user (a sliding window)."""

    def __init__(self, count: int, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.count, self.seconds, self.clock = count, seconds, clock
        self._seen: dict[str, deque[float]] = {}

    def wait(self, user: str) -> float:
        """0 when the user may ask now (and counts the question); else the seconds to wait."""
        if self.count <= 0:
            return 0.0
        now = self.clock()
        seen = self._seen.setdefault(user, deque())
        while seen and now - seen[0] >= self.seconds:
            seen.popleft()
        if len(seen) >= self.count:
            return self.seconds - (now - seen[0])
        seen.append(now)
        if len(self._seen) > 100_000:  # forget idle users
            for key in [k for k, v in self._seen.items() if not v or now - v[-1] >= self.seconds][:50_000]:
                del self._seen[key]
        return 0.0


class Desk:
    """Answers citizens on any channel, remembering each one's conversation."""

    def __init__(self, assistant, *, log: QuestionSink | None = None, handoff=None, max_chars: int = 1000,
                 rate_count: int = 20, rate_seconds: float = 60.0, conversations: int = 50_000,
                 clock: Callable[[], float] = time.monotonic):
        self.assistant = assistant
        self.log = log
        self.handoff = handoff  # bot.handoff.Handoff: requests for a person become tickets
        self.max_chars = max_chars
        self.rate = RateLimit(rate_count, rate_seconds, clock)
        self._conversations: OrderedDict[str, Conversation] = OrderedDict()
        self._max_conversations = conversations
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="desk")

    def conversation(self, channel: str, user: str) -> Conversation:
        """The conversation of one citizen on one channel (the least recently seen are forgotten)."""
        key = f"{channel}:{user}"
        with self._lock:
            found = self._conversations.pop(key, None) or Conversation()
            self._conversations[key] = found
            while len(self._conversations) > self._max_conversations:
                self._conversations.popitem(last=False)
        return found

    def ask(self, channel: str, user: str, text: str) -> Reply:
        """Answer one message; never raises for bad input."""
        wait = self.rate.wait(f"{channel}:{user}")
        if wait > 0:
            answer = Answer(clean(text or "", limit=200), "limited", parts=[("", BUSY.format(seconds=max(1, round(wait))))])
            return Reply(answer, limited=True)
        notes = []
        text = clean(text or "", limit=None)
        if len(text) > self.max_chars:
            text = cut_words(text, self.max_chars)
            notes.append(LONG_NOTE.format(limit=self.max_chars))
        if self.handoff is not None and is_handoff_request(text):
            return Reply(self.handoff.open_ticket(channel, user, text), None, notes)
        started = time.perf_counter()
        conversation = self.conversation(channel, user)
        answer = self.assistant.ask(text, conversation)
        latency_ms = (time.perf_counter() - started) * 1000
        question_id = None
        if self.log is not None:
            try:
                question_id = self.log.record(channel=channel, user=user, question=text, answer=answer,
                                              latency_ms=latency_ms)
            except Exception as e:  # a full disk or a locked database must not silence the bot
                logger.error("không ghi được câu hỏi vào nhật ký (%s: %s); vẫn trả lời", e.__class__.__name__, e)
        follow_ups = []
        # an FAQ answer is about a procedure too (the conversation's focus): offer its sections
        if answer.kind == "answer" and conversation.last_entry and self._is_procedure(conversation.last_entry):
            follow_ups = [(label, q) for section, label, q in FOLLOW_UPS if section not in answer.aspects]
        if answer.kind in ("decline", "not_held", "listed") and self.handoff is not None:
            follow_ups.append(HANDOFF_BUTTON)
        return Reply(answer, question_id, notes, follow_ups)

    def _is_procedure(self, entry_id: str) -> bool:
        data = self.assistant.data
        return bool(data and entry_id in data.entries and data.entries[entry_id].kind == "procedure")

    def feedback(self, question_id: int, value: int) -> bool:
        """Record 👍 (+1) or 👎 (-1) for a logged question; False when there is no log or no such question."""
        return bool(self.log is not None and self.log.feedback(question_id, value))

    async def aask(self, channel: str, user: str, text: str) -> Reply:
        """`ask` for async channels: runs on the desk's worker thread, one question at a time."""
        return await self.acall(self.ask, channel, user, text)

    async def acall(self, fn: Callable[..., T], *args) -> T:
        """Run `fn` on the desk's worker thread, between answers (reloading the index, recording feedback)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        """Finish the question being answered, stop the worker and close the log."""
        self._pool.shutdown(wait=True)
        if self.log is not None and hasattr(self.log, "close"):
            self.log.close()


def open_desk(cfg, assistant=None) -> Desk:
    """The desk a channel serves from: the assistant over the serving index, limits from [answer], the question
    log in <data>/log/questions.db unless [log] enabled = false."""
    if assistant is None:
        from bot.engine.assistant import Assistant

        assistant = Assistant(cfg).load()
    log = handoff = None
    if cfg.log.enabled:
        from .handoff import Handoff
        from .qlog import QuestionLog

        log = QuestionLog.open(cfg)
        handoff = Handoff(log, assistant.data.hotline if assistant.data else None)
    return Desk(assistant, log=log, handoff=handoff, max_chars=cfg.answer.max_chars, rate_count=cfg.answer.rate_count,
                rate_seconds=cfg.answer.rate_seconds)
