"""Human handoff: a citizen asks for a person; staff see a ticket with the last turns; their reply goes back.

Channel-neutral and cross-process: tickets and staff replies live in the question log's database, which works as
an outbox. The channel hosting the staff chat (Telegram, `[telegram] staff_chat`) posts `pending_tickets()` and
calls `mark_notified(ticket, staff_ref)` with the id of its staff-chat message; a staff reply to that message
becomes `staff_reply(staff_ref, text)`; every channel delivers `pending_replies(channel)` to its citizens and
calls `mark_delivered(message)` — `Courier(handoff, channel, send).run(stopping)` does that loop for a channel.
A citizen on Zalo is thus answered by the Zalo process, whoever took the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.engine.answer import Answer
from bot.engine.phrases import call, error_id
from bot.engine.text import clean, fold

from .qlog import QuestionLog, stamp
from .store import store_errors

log = logging.getLogger("bot.handoff")

COMMAND = "/canbo"
# The button channels show after a decline or a 👎: its question text is itself a handoff request.
BUTTON = ("👤 Gặp cán bộ", "Tôi muốn gặp cán bộ")
# Folded phrases that ask for a person, matched on whole syllables.
PHRASES = (
    "gap can bo", "gap nguoi", "gap nhan vien", "gap tong dai vien", "noi chuyen voi nguoi", "noi chuyen voi can bo",
    "noi chuyen voi nhan vien", "lien he can bo", "chuyen can bo", "chuyen cho can bo", "nguoi that", "can bo ho tro",
    "can bo tra loi", "nhan vien ho tro", "tu van vien", "gap truc tiep", "nguoi ho tro",
)
CLOSE_COMMANDS = ("/xong", "/dong")
TURNS = 5

OPENED = ("Tôi đã chuyển yêu cầu của bạn tới cán bộ phụ trách (phiếu số {id}). Cán bộ sẽ trả lời ngay trong cuộc "
          "trò chuyện này, thường trong giờ hành chính (sáng 7 giờ 30 – 11 giờ 30, chiều 13 giờ 30 – 17 giờ, thứ Hai "
          "đến thứ Sáu). Bạn cứ tiếp tục hỏi tôi trong lúc chờ. Việc gấp, bạn vui lòng gọi {hotline}.")
ALREADY = ("Yêu cầu gặp cán bộ của bạn (phiếu số {id}) đang chờ cán bộ trả lời; tin trả lời sẽ đến ngay trong cuộc "
           "trò chuyện này. Việc gấp, bạn vui lòng gọi {hotline}.")
FAILED = ("Xin lỗi, hệ thống chưa chuyển được yêu cầu của bạn tới cán bộ. Bạn vui lòng thử lại sau ít phút, hoặc "
          "gọi {hotline}. (mã lỗi {error_id})")
REPLY = "Cán bộ trả lời yêu cầu số {id} của bạn:\n\n{text}"
CLOSED = ("Cán bộ đã đóng yêu cầu số {id}. Cảm ơn bạn đã liên hệ! Nếu cần hỗ trợ thêm, bạn gõ /canbo hoặc "
          "\"gặp cán bộ\".")
REASONS = {"command": "lệnh /canbo", "button": "nút \"Gặp cán bộ\"", "words": "lời nhắn"}
# Every answer Kind in staff's words (keyed by str: the turns come back from the database).
KINDS: dict[str, str] = {"answer": "đã trả lời", "decline": "không trả lời được", "error": "lỗi", "greeting": "chào",
                         "thanks": "cảm ơn", "empty": "tin trống", "limited": "gửi quá nhanh",
                         "busy": "hệ thống quá tải", "handoff": "yêu cầu gặp cán bộ", "not_held": "chưa có trong kho",
                         "listed": "chỉ biết tên thủ tục", "late": "đến muộn, chưa trả lời",
                         "clarify": "hỏi lại thủ tục nào"}


def is_request(text: str) -> bool:
    """True when a message asks for a person: /canbo, the handoff button, or words like 'gặp cán bộ'."""
    text = clean(text or "")
    if text.split(" ", 1)[0].lower().split("@")[0] == COMMAND:
        return True
    folded = " " + " ".join(re.findall(r"[0-9a-z]+", fold(text))) + " "
    return any(f" {p} " in folded for p in PHRASES)


def reason_of(text: str) -> str:
    """How the citizen asked: command, button or words."""
    text = clean(text or "")
    if text.lower().startswith(COMMAND):
        return "command"
    return "button" if text == BUTTON[1] else "words"


@dataclass
class Ticket:
    """A citizen's request for a person, as staff see it."""

    id: int
    opened_at: str
    channel: str
    reason: str
    turns: list[dict[str, Any]]
    status: str
    staff_ref: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Ticket:
        """A ticket from its database row."""
        return cls(row["id"], row["opened_at"], row["channel"], row["reason"], json.loads(row["turns"] or "[]"),
                   row["status"], row["staff_ref"])


@dataclass
class Delivery:
    """A staff message waiting to be sent to a citizen on their channel."""

    id: int
    ticket_id: int
    channel: str
    address: str  # the channel's own id of the citizen (chat id, Zalo user id, web session)
    text: str  # ready to send, in Vietnamese


def staff_text(ticket: Ticket) -> str:
    """The staff-chat notification: who asked how, the last turns, and how to answer."""
    lines = [f"🔔 Yêu cầu gặp cán bộ số {ticket.id} — kênh {ticket.channel}, {ticket.opened_at} UTC, "
             f"qua {REASONS.get(ticket.reason, ticket.reason)}.", "", "Các lượt gần nhất:"]
    if not ticket.turns:
        lines.append("(chưa có câu hỏi nào)")
    for turn in ticket.turns:
        question = turn["question"] if len(turn["question"]) <= 300 else turn["question"][:299] + "…"
        line = f"• Hỏi: {question}"
        if not turn.get("kind"):  # the request itself
            lines.append(line)
            continue
        result = KINDS.get(turn.get("kind") or "", turn.get("kind") or "")
        if turn.get("title"):
            result += f": {turn['title']}"
        if turn.get("feedback") == -1:
            result += " 👎"
        elif turn.get("feedback") == 1:
            result += " 👍"
        lines.append(f"{line}\n  → {result}")
    lines += ["", "Trả lời (reply) tin nhắn này để gửi câu trả lời cho người dân; trả lời /xong để đóng yêu cầu."]
    return "\n".join(lines)


class Handoff:
    """Tickets for human help, stored in the question log's database."""

    def __init__(self, log: QuestionLog, hotline: Mapping[str, str] | None = None, turns: int = TURNS):
        self.log, self.turns = log, turns
        self.hotline = hotline  # the knowledge base's; None: the national portal's

    @property
    def _db(self):
        return self.log.db

    def _hotline(self) -> str:
        return call(self.hotline)

    def open_ticket(self, channel: str, user: str, text: str) -> Answer:
        """Record a ticket with the citizen's last turns (or find their open one) and say what happens next;
        when the database fails (disk full, locked), apologise with the hotline instead."""
        try:
            return self._open_ticket(channel, user, text)
        except store_errors() as e:
            error = error_id()
            log.error("error %s opening a handoff ticket (%s: %s)", error, e.__class__.__name__, e)
            return Answer(text, "error", title="Gặp cán bộ",
                          parts=[("", FAILED.format(hotline=self._hotline(), error_id=error))])

    def _open_ticket(self, channel: str, user: str, text: str) -> Answer:
        key = self.log.user_key(channel, user)
        with self.log.lock:
            open_ = list(self._db.query("SELECT id FROM tickets WHERE user_key = ? AND channel = ? AND status = 'open'",
                                        [key, channel]))
            if open_:
                return self._answer(text, ALREADY.format(id=open_[0]["id"], hotline=self._hotline()))
            turns = self.log.last_turns(channel, user, self.turns)
            last_question = turns[-1]["id"] if turns else None
            if reason_of(text) == "words":  # the request itself may say what the citizen needs
                turns.append({"question": self.log.mask(clean(text or ""))})
            now = stamp(self.log.clock())
            row = {"opened_at": now, "channel": channel, "user_key": key, "address": str(user),
                   "reason": reason_of(text), "question_id": last_question,
                   "turns": json.dumps([{k: t.get(k) for k in ("question", "kind", "title", "feedback")} for t in turns],
                                       ensure_ascii=False),
                   "status": "open", "staff_ref": None, "updated_at": now}
            ticket_id = self._db.table("tickets").insert(row).last_rowid
        return self._answer(text, OPENED.format(id=ticket_id, hotline=self._hotline()))

    @staticmethod
    def _answer(question: str, text: str) -> Answer:
        return Answer(question, "handoff", title="Gặp cán bộ", parts=[("", text)], confidence=1.0)

    def ticket(self, ticket_id: int) -> Ticket | None:
        """One ticket, or None."""
        with self.log.lock:
            rows = list(self._db.query("SELECT * FROM tickets WHERE id = ?", [ticket_id]))
        return Ticket.from_row(rows[0]) if rows else None

    def ticket_by_ref(self, staff_ref: str) -> Ticket | None:
        """The ticket a staff-chat message announced, or None."""
        with self.log.lock:
            rows = list(self._db.query("SELECT * FROM tickets WHERE staff_ref = ?", [str(staff_ref)]))
        return Ticket.from_row(rows[0]) if rows else None

    @property
    def _skip_locked(self) -> str:
        """Row locks for a claim: PostgreSQL skips rows another worker is claiming; SQLite's writes are serial."""
        return " FOR UPDATE SKIP LOCKED" if getattr(self.log, "kind", "sqlite") == "postgres" else ""

    def claim_ticket(self) -> Ticket | None:
        """The oldest ticket the staff chat has not been told about, claimed for this relay (no other relay posts
        it); then `mark_notified`, or `release_ticket` when posting failed."""
        with self.log.lock:
            rows = list(self._db.query(
                "UPDATE tickets SET staff_ref = ? WHERE id = (SELECT id FROM tickets WHERE staff_ref IS NULL AND "
                f"status = 'open' ORDER BY id LIMIT 1{self._skip_locked}) AND staff_ref IS NULL RETURNING *",
                [f"posting:{stamp(self.log.clock())}"]))
        return Ticket.from_row(rows[0]) if rows else None

    def release_ticket(self, ticket_id: int) -> None:
        """A claimed ticket could not be posted: let the next pass (of any relay) post it."""
        with self.log.lock:
            self._db.execute("UPDATE tickets SET staff_ref = NULL WHERE id = ? AND staff_ref LIKE 'posting:%'",
                             [ticket_id])

    def claim_reply(self, channel: str) -> Delivery | None:
        """The oldest staff message for a citizen of `channel`, claimed so that no other courier sends it; then
        `mark_delivered`. A claimed message is never claimed again, even if its courier dies before sending it
        (the citizen may miss it, never get it twice)."""
        with self.log.lock:
            rows = list(self._db.query(
                "UPDATE ticket_messages SET claimed_at = ? WHERE id = (SELECT m.id FROM ticket_messages m "
                "JOIN tickets t ON t.id = m.ticket_id WHERE m.sender = 'staff' AND m.delivered_at IS NULL "
                "AND m.claimed_at IS NULL AND t.channel = ? AND t.address IS NOT NULL ORDER BY m.id LIMIT 1"
                f"{' FOR UPDATE OF m SKIP LOCKED' if self._skip_locked else ''}) AND claimed_at IS NULL "
                "RETURNING id, ticket_id, text", [stamp(self.log.clock()), channel]))
            if not rows:
                return None
            address = list(self._db.query("SELECT address FROM tickets WHERE id = ?", [rows[0]["ticket_id"]]))
        return Delivery(rows[0]["id"], rows[0]["ticket_id"], channel, address[0]["address"], rows[0]["text"])

    def release_reply(self, delivery: Delivery) -> None:
        """A claimed staff message was not sent (the channel said so): let the next pass of any courier send it."""
        with self.log.lock:
            self._db.execute("UPDATE ticket_messages SET claimed_at = NULL WHERE id = ? AND delivered_at IS NULL",
                             [delivery.id])

    def pending_tickets(self) -> list[Ticket]:
        """Tickets the staff chat has not been told about yet, oldest first."""
        with self.log.lock:
            rows = list(self._db.query("SELECT * FROM tickets WHERE staff_ref IS NULL AND status = 'open' ORDER BY id"))
        return [Ticket.from_row(r) for r in rows]

    def mark_notified(self, ticket_id: int, staff_ref: str) -> None:
        """Remember the staff-chat message announcing a ticket: a reply to it answers the ticket."""
        with self.log.lock:
            self._db.execute("UPDATE tickets SET staff_ref = ?, updated_at = ? WHERE id = ?",
                             [str(staff_ref), stamp(self.log.clock()), ticket_id])

    def staff_reply(self, staff_ref: str, text: str) -> Ticket | None:
        """A staff member answered the message `staff_ref`: queue the text for the citizen (or close on /xong).

        Returns the ticket, or None when `staff_ref` announces no ticket (an ordinary staff-chat message)."""
        text = (text or "").strip()
        with self.log.lock, self._db.atomic():
            rows = list(self._db.query("SELECT * FROM tickets WHERE staff_ref = ?", [str(staff_ref)]))
            if not rows or not text:
                return None
            ticket = Ticket.from_row(rows[0])
            if ticket.status == "closed":
                return ticket
            now = stamp(self.log.clock())
            closing = text.split(" ", 1)[0].lower().split("@")[0] in CLOSE_COMMANDS
            message = CLOSED.format(id=ticket.id) if closing else REPLY.format(id=ticket.id, text=text)
            self._db.table("ticket_messages").insert(
                {"ticket_id": ticket.id, "at": now, "sender": "staff", "text": message, "delivered_at": None})
            ticket.status = "closed" if closing else "answered"
            self._db.execute("UPDATE tickets SET status = ?, updated_at = ? WHERE id = ?", [ticket.status, now, ticket.id])
        return ticket

    def pending_replies(self, channel: str) -> list[Delivery]:
        """Staff messages to send to citizens of one channel, oldest first."""
        with self.log.lock:
            rows = list(self._db.query(
                "SELECT m.id, m.ticket_id, t.channel, t.address, m.text FROM ticket_messages m "
                "JOIN tickets t ON t.id = m.ticket_id WHERE m.sender = 'staff' AND m.delivered_at IS NULL "
                "AND m.claimed_at IS NULL AND t.channel = ? AND t.address IS NOT NULL ORDER BY m.id", [channel]))
        return [Delivery(r["id"], r["ticket_id"], r["channel"], r["address"], r["text"]) for r in rows]

    def take_replies(self, channel: str, address: str) -> list[Delivery]:
        """Staff messages waiting for one citizen, oldest first, marked delivered as they are handed over (a channel
        the citizen polls: the web chat). Two workers polled at once hand each message over once."""
        now = stamp(self.log.clock())
        with self.log.lock, self._db.atomic():
            rows = list(self._db.query(
                "UPDATE ticket_messages SET claimed_at = ?, delivered_at = ? WHERE id IN (SELECT m.id FROM "
                "ticket_messages m JOIN tickets t ON t.id = m.ticket_id WHERE m.sender = 'staff' AND "
                "m.delivered_at IS NULL AND m.claimed_at IS NULL AND t.channel = ? AND t.address = ?"
                f"{' FOR UPDATE OF m SKIP LOCKED' if self._skip_locked else ''}) RETURNING id, ticket_id, text",
                [now, now, channel, str(address)]))
            found = sorted((Delivery(r["id"], r["ticket_id"], channel, str(address), r["text"]) for r in rows),
                           key=lambda d: d.id)
            for ticket_id in sorted({d.ticket_id for d in found}):
                self._forget_address(ticket_id)
        return found

    def mark_delivered(self, delivery: Delivery) -> None:
        """The citizen received a staff message; a closed ticket forgets the citizen's address."""
        with self.log.lock, self._db.atomic():
            self._db.execute("UPDATE ticket_messages SET delivered_at = ? WHERE id = ?",
                             [stamp(self.log.clock()), delivery.id])
            self._forget_address(delivery.ticket_id)

    def _forget_address(self, ticket_id: int) -> None:
        self._db.execute(
            "UPDATE tickets SET address = NULL WHERE id = ? AND status = 'closed' AND NOT EXISTS "
            "(SELECT 1 FROM ticket_messages WHERE ticket_id = ? AND delivered_at IS NULL)", [ticket_id, ticket_id])


class Undeliverable(Exception):
    """The channel cannot reach this citizen any more (blocked the bot, chat deleted): do not retry."""


class MaybeDelivered(Exception):
    """A send failed in a way that does not prove the message was not delivered (a timeout, a connection lost after
    the request went out, a 5xx other than 503): sending it again could give the citizen the same message twice."""


class Courier:
    """Delivers staff replies to the citizens of one channel: `await Courier(handoff, "zalo", send).run(stop)`.

    `send(address, text)` is the channel's own "send a message to this citizen" (async). It raises `Undeliverable`
    when the citizen cannot be reached (the reply is then dropped and logged) and `MaybeDelivered` when the send
    failed after the message may have gone out (the reply is not sent again: a citizen may miss it, never get it
    twice); any other exception means "try again later" (the reply goes back to the queue). Each reply is claimed
    before it is sent (`Handoff.claim_reply`: SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL), so any number of
    couriers, in any number of workers, send it once."""

    def __init__(self, handoff: Handoff, channel: str, send: Callable[[str, str], Awaitable[Any]],
                 interval: float = 2.0, on_undeliverable: Callable[[Delivery, Exception], Awaitable[Any]] | None = None):
        self.handoff, self.channel, self.send, self.interval = handoff, channel, send, interval
        self.on_undeliverable = on_undeliverable

    async def pump(self) -> int:
        """Deliver every queued reply of this channel once; returns how many were delivered."""
        delivered = 0
        while (delivery := await asyncio.to_thread(self.handoff.claim_reply, self.channel)) is not None:
            try:
                await self.send(delivery.address, delivery.text)
                delivered += 1
            except Undeliverable as e:
                log.warning("handoff reply %s on %s undeliverable: %s", delivery.id, self.channel, e)
                if self.on_undeliverable is not None:
                    await self.on_undeliverable(delivery, e)
            except MaybeDelivered as e:
                log.warning("handoff reply %s on %s may not have been delivered (%s); not sent again", delivery.id,
                            self.channel, e)
            except BaseException:  # not sent: back to the queue, for the next pass of any courier
                await asyncio.to_thread(self.handoff.release_reply, delivery)
                raise
            await asyncio.to_thread(self.handoff.mark_delivered, delivery)
        return delivered

    async def run(self, stopping: asyncio.Event) -> None:
        """Pump every `interval` seconds until `stopping` is set (a pass under way is finished first)."""
        while not stopping.is_set():
            try:
                await self.pump()
            except Exception:
                log.exception("delivering handoff replies on %s failed; retrying", self.channel)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.interval)
