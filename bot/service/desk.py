"""The public service desk every channel talks to: one assistant, a conversation per citizen, limits, logging.

Channels (terminal, Telegram, Zalo, web) turn their messages into `Desk.ask(channel, user, text)` calls and
render the `Reply`. Async channels call `await desk.aask(...)`: the question is answered on one of the desk's
`[answer] workers` threads, side by side with others (their questions share encoder batches: `engine.batching`),
while the event loop stays free. Each citizen's own questions are answered in order.

The desk never queues more than it can answer in time: when a question's expected wait passes `[answer]
max_wait_s`, or `[answer] queue` questions are already admitted, the citizen gets the busy reply at once (kind
"busy", logged like any answer) and the question takes no place in the queue.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
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
from bot.engine.phrases import BUSY, overloaded
from bot.engine.text import clean, cut_words

from .handoff import BUTTON as HANDOFF_BUTTON
from .handoff import is_request as is_handoff_request
from .store import SharedRateLimit, SharedState, StoreBusy, StoreError

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

    def feedback(self, question_id: int, value: int, *, channel: str | None = None,
                 user: str | None = None) -> bool:
        ...


@dataclass
class Reply:
    """One answer as a channel receives it."""

    answer: Answer
    question_id: int | None = None  # for feedback buttons; None when nothing was logged
    notes: list[str] = field(default_factory=list)  # said before the answer (long message cut, …)
    follow_ups: list[tuple[str, str]] = field(default_factory=list)  # (label, question) buttons
    limited: bool = False  # refused by the per-user rate limit; nothing was answered
    busy: bool = False  # refused because too many citizens are asking at once; nothing was answered
    retry_after: int = 0  # seconds after which asking again makes sense (limited or busy)


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


class Backlog:
    """Questions admitted and how fast they are answered while the desk is saturated: the expected wait.

    Used from the event loop only. The rate is the answers finished over the last `window` seconds in which the desk
    always had more to answer (its capacity, not the load offered), once that stretch is a second long; answers
    finish in batches, and a shorter stretch overstated the pace (measured: waits of 21 s admitted under a 10 s
    bound). Before the first such second the answer time of recent questions stands in, as if they were answered
    one at a time.
    """

    def __init__(self, workers: int, clock: Callable[[], float] = time.monotonic, window: float = 5.0):
        self.workers = max(1, workers)
        self.clock = clock
        self.window = window
        self.admitted = 0
        self.rate: float | None = None  # answers a second when saturated
        # seconds one answer takes on a worker (moving average): until a rate is measured, the expected wait is
        # this times the questions admitted. It starts where a lone answer stands on the 2-core machine when the
        # other core is busy (BENCHMARKS.md), so a cold start under a burst does not admit a crowd.
        self.service = 0.25
        self.waited = 0.0  # seconds from admission to answer of the last questions (moving average)
        self._finished: deque[float] = deque()  # when answers finished, in the current saturated stretch

    def expected_wait(self) -> float:
        """Seconds a question admitted now would wait for its answer: from the measured pace, and never less than
        the questions answered last have waited while the desk stays saturated (when the pace falls, the queue
        already admitted shows it first)."""
        if self.rate:
            return max((self.admitted + 1) / self.rate, self.waited if self.admitted >= self.workers else 0.0)
        # Before the pace is measured (a burst at start), assume the workers gain nothing over one at a time: on
        # two cores they gain little, and a guess too kind admits a crowd that then waits far past max_wait_s.
        return (self.admitted + 1) * self.service

    def done(self, seconds: float, waited: float = 0.0) -> None:
        """One admitted question was answered, taking `seconds` on its worker and `waited` from admission."""
        self.admitted -= 1
        self.service = 0.9 * self.service + 0.1 * seconds
        self.waited = 0.8 * self.waited + 0.2 * waited
        now = self.clock()
        if self.admitted < self.workers:  # not saturated: the pace is the load's, not the desk's
            self._finished.clear()
            return
        finished = self._finished
        finished.append(now)
        while now - finished[0] > self.window:
            finished.popleft()
        if now - finished[0] >= 1.0:
            self.rate = (len(finished) - 1) / (now - finished[0])


@dataclass
class _Turn:
    """One citizen's place in line: their questions are answered one after another."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


class Desk:
    """Answers citizens on any channel, remembering each one's conversation."""

    def __init__(self, assistant, *, log: QuestionSink | None = None, handoff=None, max_chars: int = 1000,
                 rate_count: int = 20, rate_seconds: float = 60.0, conversations: int = 50_000,
                 workers: int = 1, max_wait_s: float = 10.0, queue: int = 1000,
                 clock: Callable[[], float] = time.monotonic, state: SharedState | None = None):
        self.assistant = assistant
        self.log = log
        self.handoff = handoff  # bot.handoff.Handoff: requests for a person become tickets
        self.max_chars = max_chars
        # Conversations and rate limits: in this process, or (several workers) in the PostgreSQL store.
        self.state = state
        self.store = state.db if state is not None else None  # the PostgreSQL store, closed with the desk
        self.rate: RateLimit | SharedRateLimit = (RateLimit(rate_count, rate_seconds, clock) if state is None
                                                  else SharedRateLimit(state, rate_count, rate_seconds))
        self.max_wait_s, self.queue = max_wait_s, queue
        self.backlog = Backlog(workers, clock)
        self.busy_replies = 0
        self._conversations: OrderedDict[str, Conversation] = OrderedDict()
        self._max_conversations = conversations
        self._lock = threading.Lock()
        self._turns: dict[str, _Turn] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="desk")
        # Busy replies are logged off the event loop and off the answer threads, one after another.
        self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="desk-log")
        # Rate-limit checks against the shared store, off the event loop (as many as the store's connections).
        self._store = ThreadPoolExecutor(max_workers=8, thread_name_prefix="desk-store")

    def conversation(self, channel: str, user: str) -> Conversation:
        """The conversation of one citizen on one channel (the least recently seen are forgotten)."""
        key = f"{channel}:{user}"
        with self._lock:
            found = self._conversations.pop(key, None) or Conversation()
            self._conversations[key] = found
            while len(self._conversations) > self._max_conversations:
                self._conversations.popitem(last=False)
        return found

    def _conversation(self, channel: str, user: str) -> tuple[Conversation, str | None]:
        """The citizen's conversation and the entry it was about before this question. From the shared store: a
        store that is down starts a new conversation (StoreBusy goes up: the busy reply)."""
        if self.state is None:
            conversation = self.conversation(channel, user)
            return conversation, conversation.last_entry
        try:
            last = self.state.conversation(f"{channel}:{user}")
        except StoreBusy:
            raise
        except StoreError as e:
            logger.warning("chưa đọc được cuộc trò chuyện (%s); trả lời như câu hỏi mới", e)
            last = None
        return Conversation(last_entry=last), last

    def ask(self, channel: str, user: str, text: str) -> Reply:
        """Answer one message; never raises for bad input."""
        try:
            return self._limited(channel, user, text) or self._answer(channel, user, text)
        except StoreBusy:
            return self._busy(channel, user, text)

    def _limited(self, channel: str, user: str, text: str) -> Reply | None:
        """The reply to a citizen over the per-user rate, else None (and the question is counted). A store whose
        connections are all busy raises StoreBusy (the busy reply); a store that is down lets the question through."""
        try:
            wait = self.rate.wait(f"{channel}:{user}")
        except StoreBusy:
            raise
        except StoreError as e:
            logger.warning("giới hạn tần suất chưa kiểm tra được (%s); vẫn trả lời", e)
            wait = 0
        if wait <= 0:
            return None
        seconds = max(1, round(wait))
        answer = Answer(clean(text or "", limit=200), "limited", parts=[("", BUSY.format(seconds=seconds))])
        return Reply(answer, limited=True, retry_after=seconds)

    def _answer(self, channel: str, user: str, text: str) -> Reply:
        notes = []
        text = clean(text or "", limit=None)
        if len(text) > self.max_chars:
            text = cut_words(text, self.max_chars)
            notes.append(LONG_NOTE.format(limit=self.max_chars))
        if self.handoff is not None and is_handoff_request(text):
            return Reply(self.handoff.open_ticket(channel, user, text), None, notes)
        started = time.perf_counter()
        conversation, before = self._conversation(channel, user)
        answer = self.assistant.ask(text, conversation)
        if self.state is not None and conversation.last_entry != before:
            try:
                self.state.save_conversation(f"{channel}:{user}", conversation.last_entry)
            except StoreError as e:
                logger.warning("chưa lưu được cuộc trò chuyện (%s)", e)
        question_id = self._record(channel, user, text, answer, (time.perf_counter() - started) * 1000)
        follow_ups = []
        # an FAQ answer is about a procedure too (the conversation's focus): offer its sections
        if answer.kind == "answer" and conversation.last_entry and self._is_procedure(conversation.last_entry):
            follow_ups = [(label, q) for section, label, q in FOLLOW_UPS if section not in answer.aspects]
        elif answer.kind == "answer" and answer.offered:  # a plan's or topic's other sections, asked by heading
            follow_ups = [(label, heading) for label, heading in answer.offered]
        elif answer.kind == "clarify":  # one button per sibling: it sends the sibling's title, the choice
            follow_ups = list(answer.choices)
        if answer.kind in ("decline", "not_held", "listed") and self.handoff is not None:
            follow_ups.append(HANDOFF_BUTTON)
        return Reply(answer, question_id, notes, follow_ups)

    def _record(self, channel: str, user: str, text: str, answer: Answer, latency_ms: float) -> int | None:
        if self.log is None:
            return None
        try:
            return self.log.record(channel=channel, user=user, question=text, answer=answer, latency_ms=latency_ms)
        except Exception as e:  # a full disk or a locked database must not silence the bot
            logger.error("không ghi được câu hỏi vào nhật ký (%s: %s); vẫn trả lời", e.__class__.__name__, e)
            return None

    def _busy(self, channel: str, user: str, text: str) -> Reply:
        """The busy reply, at once; the question is logged (kind "busy") on the side thread."""
        self.busy_replies += 1
        hotline = getattr(self.assistant, "hotline", None)
        answer = Answer(clean(text or "", limit=self.max_chars), "busy", parts=[("", overloaded(hotline))])
        self._side.submit(self._record, channel, user, answer.question, answer, 0.0)
        return Reply(answer, busy=True, retry_after=60)

    def _is_procedure(self, entry_id: str) -> bool:
        data = self.assistant.data
        return bool(data and entry_id in data.entries and data.entries[entry_id].kind == "procedure")

    def feedback(self, question_id: int, value: int, *, channel: str, user: str | None = None,
                 token: str | None = None) -> bool:
        """Record 👍 (+1) or 👎 (-1) for a logged question, only from the citizen who asked it: the same `user` on the
        same channel, or (channels without accounts) the holder of the answer's `token`. False otherwise, and when
        there is no log or no such question. Blocks on a busy log: async channels call `afeedback`."""
        if self.log is None or (user is None and token is None):
            return False
        if token is not None:
            expected = getattr(self.log, "answer_token", None)
            if expected is None or not isinstance(token, str) or not hmac.compare_digest(
                    expected(question_id).encode(), token.encode("utf-8", "surrogatepass")):
                return False
        try:
            return bool(self.log.feedback(question_id, value, channel=channel, user=user))
        except Exception as e:  # a locked or full log: the citizen is thanked all the same, staff see the error
            logger.error("không ghi được góp ý vào nhật ký (%s: %s)", e.__class__.__name__, e)
            return False

    async def afeedback(self, question_id: int, value: int, *, channel: str, user: str | None = None,
                        token: str | None = None) -> bool:
        """`feedback` off the event loop, on the log's side thread: a log locked for seconds delays only the
        feedback, never a webhook or an answer."""
        return await asyncio.get_running_loop().run_in_executor(
            self._side, functools.partial(self.feedback, question_id, value, channel=channel, user=user, token=token))

    def record_late(self, channel: str, user: str, text: str) -> None:
        """Log a message that arrived too late to be answered (kind "late", for staff review), on the side thread."""
        answer = Answer(clean(text or "", limit=self.max_chars), "late")
        self._side.submit(self._record, channel, user, answer.question, answer, 0.0)

    async def acall_log(self, fn: Callable[..., T], *args) -> T:
        """Run a question-log call (handoff, tokens) on the log's side thread, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._side, fn, *args)

    async def aask(self, channel: str, user: str, text: str) -> Reply:
        """`ask` for async channels: answered on a worker thread, after the citizen's earlier questions.

        Refused at once, taking no place in the queue, when the citizen is over the rate limit or the desk is too
        busy to answer within `max_wait_s`.
        """
        key = f"{channel}:{user}"
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn()
        turn.waiting += 1
        try:
            async with turn.lock:
                try:
                    refused = (self._limited(channel, user, text) if self.state is None else
                               await asyncio.get_running_loop().run_in_executor(self._store, self._limited, channel,
                                                                                user, text))
                except StoreBusy:
                    return self._busy(channel, user, text)
                if refused is not None:
                    return refused
                if self.backlog.admitted >= self.queue or self.backlog.expected_wait() > self.max_wait_s:
                    return self._busy(channel, user, text)
                self.backlog.admitted += 1
                took, admitted = [0.0], time.monotonic()
                try:
                    return await asyncio.get_running_loop().run_in_executor(self._pool, self._timed, took, channel,
                                                                            user, text)
                finally:
                    self.backlog.done(took[0], time.monotonic() - admitted)
        finally:
            turn.waiting -= 1
            if turn.waiting == 0:
                del self._turns[key]

    async def warm_up(self) -> float | None:
        """Before serving: load the encoder with one question, then answer `2 × workers` questions side by side (the
        titles of entries of the base; not logged, no conversation kept) and take their pace as the backlog's first
        measured rate. A burst at start is then admitted by what this machine does, not by the cold guess
        (`Backlog.service`), which told most of a first crowd to come back later although the desk could answer them
        within `max_wait_s`. Returns the pace (answers a second), or None without an index or when a question
        fails (logged; the desk serves all the same)."""
        data = self.assistant.data
        if data is None or not data.entries:
            return None
        titles = [entry.title for _, entry in sorted(data.entries.items())][:2 * self.backlog.workers + 1]
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self.assistant.ask, titles[0], Conversation())
            started = time.perf_counter()
            await asyncio.gather(*(loop.run_in_executor(self._pool, self.assistant.ask, title, Conversation())
                                   for title in titles[1:]))
            elapsed = time.perf_counter() - started
        except Exception as e:  # never keeps the desk from serving
            logger.warning("khởi động: chưa đo được tốc độ trả lời (%s: %s)", e.__class__.__name__, e)
            return None
        pace = (len(titles) - 1) / max(elapsed, 1e-6)
        if self.backlog.rate is None:
            self.backlog.rate = pace
        logger.info("khởi động: %d câu hỏi thử trong %.2f giây (%.1f câu/giây)", len(titles) - 1, elapsed, pace)
        return pace

    def _timed(self, took: list[float], channel: str, user: str, text: str) -> Reply:
        """`_answer` on a worker, noting how long it took there (not counting its wait for the worker)."""
        started = time.perf_counter()
        try:
            return self._answer(channel, user, text)
        except StoreBusy:
            return self._busy(channel, user, text)
        finally:
            took[0] = time.perf_counter() - started

    async def acall(self, fn: Callable[..., T], *args) -> T:
        """Run `fn` on a worker thread, off the event loop (reloading the index, recording feedback)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        """Finish the questions being answered, stop the workers and close the log."""
        self._pool.shutdown(wait=True)
        self._side.shutdown(wait=True)
        self._store.shutdown(wait=True)
        if self.log is not None and hasattr(self.log, "close") and getattr(self.log, "kind", "sqlite") == "sqlite":
            self.log.close()
        if self.store is not None:
            self.store.close()


def open_desk(cfg, assistant=None, env: dict[str, str] | None = None) -> Desk:
    """The desk a channel serves from: the assistant over the serving index, limits from [answer], the question
    log in <data>/log/questions.db unless [log] enabled = false. With `[store] url`, the log, tickets,
    conversations and rate limits live in PostgreSQL, shared with every other worker (raises StoreUnavailable,
    naming the database without its password, when it cannot be reached)."""
    from .qlog import hash_key
    from .store import open_pg

    db = open_pg(cfg)  # first: a database that is down stops the start before the index is loaded
    try:
        if assistant is None:
            from bot.engine.assistant import Assistant

            assistant = Assistant(cfg).load()
        log = handoff = state = None
        if db is not None:
            state = SharedState(db, hash_key(cfg.data_dir, env), ttl=cfg.store.conversation_ttl_s)
        if cfg.log.enabled:
            from .handoff import Handoff
            from .qlog import QuestionLog

            log = QuestionLog.open(cfg, env, db=db)
            handoff = Handoff(log, assistant.data.hotline if assistant.data else None)
    except BaseException:
        if db is not None:
            db.close()
        raise
    a = cfg.answer
    return Desk(assistant, log=log, handoff=handoff, max_chars=a.max_chars, rate_count=a.rate_count,
                rate_seconds=a.rate_seconds, workers=a.workers, max_wait_s=a.max_wait_s, queue=a.queue, state=state)
