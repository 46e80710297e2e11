"""Handoff over Telegram: new tickets go to the staff chat, a staff reply there goes back to the citizen.

`StaffRelay(handoff, staff_chat).install(app)` adds to a python-telegram-bot `Application`: a handler (group -1,
before the channel's own) that takes staff replies to ticket messages in `[telegram] staff_chat`, and a background
task that every few seconds posts new tickets to the staff chat and delivers staff replies to citizens who asked
on Telegram. Tickets from other channels reach the same staff chat; their replies are delivered by those
channels' processes (`Handoff.pending_replies(channel)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram import ForceReply, Update
from telegram.error import BadRequest, NetworkError, TelegramError
from telegram.ext import Application, ApplicationHandlerStop, ContextTypes, MessageHandler, filters

from bot.service.handoff import Courier, Delivery, Handoff, MaybeDelivered, Undeliverable, staff_text

log = logging.getLogger("bot.handoff")

SENT = "Đã gửi câu trả lời tới người dân (phiếu số {id})."
CLOSED = "Đã đóng phiếu số {id} và báo cho người dân."
ALREADY_CLOSED = "Phiếu số {id} đã đóng; người dân không nhận được tin này. Họ có thể mở phiếu mới bằng /canbo."
UNDELIVERABLE = "Không gửi được tin tới người dân của phiếu số {id} ({error}); họ có thể đã chặn bot."


class StaffRelay:
    """Connects the handoff core to a Telegram staff chat and to citizens on Telegram."""

    def __init__(self, handoff: Handoff, staff_chat: str | int, interval: float = 2.0):
        self.handoff = handoff
        try:
            self.staff_chat = int(staff_chat)
        except ValueError:
            raise ValueError(f"[telegram] staff_chat must be a chat id such as -1001234567890, got {staff_chat!r}") \
                from None
        self.interval = interval
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    def ref(self, message_id: int) -> str:
        """How a staff-chat message is remembered on its ticket."""
        return f"{self.staff_chat}:{message_id}"

    def install(self, app: Application) -> None:
        """Take staff replies before the channel's handlers; pump tickets and replies while the app runs."""
        app.add_handler(MessageHandler(filters.Chat(chat_id=self.staff_chat) & filters.REPLY & filters.TEXT,
                                       self.on_staff_reply), group=-1)
        previous_init, previous_stop = app.post_init, app.post_stop

        async def post_init(application: Application) -> None:
            if previous_init is not None:
                await previous_init(application)
            self._task = asyncio.create_task(self.run(application.bot))

        async def post_stop(application: Application) -> None:
            # Let the pass under way finish: a ticket posted to staff but not yet marked would be posted again.
            self._stopping.set()
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("handoff relay stopped in the middle of a pass")
            if previous_stop is not None:
                await previous_stop(application)

        app.post_init, app.post_stop = post_init, post_stop

    async def run(self, bot) -> None:
        """Pump every `interval` seconds until the application stops; a failed pass is logged and retried."""
        while not self._stopping.is_set():
            try:
                await self.pump(bot)
            except Exception:
                log.exception("handoff pump failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval)

    async def pump(self, bot) -> None:
        """Post tickets the staff chat has not seen; deliver staff replies to Telegram citizens."""
        async with self._lock:
            # each ticket is claimed first, so that relays in several workers post it once
            while (ticket := await asyncio.to_thread(self.handoff.claim_ticket)) is not None:
                try:
                    sent = await bot.send_message(self.staff_chat, staff_text(ticket), reply_markup=ForceReply(
                        input_field_placeholder=f"Trả lời phiếu số {ticket.id}"))
                except BaseException:
                    await asyncio.to_thread(self.handoff.release_ticket, ticket.id)
                    raise
                await asyncio.to_thread(self.handoff.mark_notified, ticket.id, self.ref(sent.message_id))
            await self.courier(bot).pump()

    def courier(self, bot) -> Courier:
        """Delivery of staff replies to citizens on Telegram; a citizen who blocked the bot is reported to staff."""

        async def send(address: str, text: str) -> None:
            from . import NotSent

            try:
                await bot.send_message(int(address), text)
            except NotSent:
                raise  # Telegram did not take it: the reply stays queued for the next pass
            except BadRequest as e:  # refused (chat not found…): it will never go through
                raise Undeliverable(str(e)) from e
            except NetworkError as e:  # a timeout, a lost connection: it may have arrived; never sent twice
                raise MaybeDelivered(str(e)) from e
            except (TelegramError, ValueError) as e:  # blocked, chat gone
                raise Undeliverable(str(e)) from e

        async def tell_staff(delivery: Delivery, error: Exception) -> None:
            with contextlib.suppress(TelegramError):
                await bot.send_message(self.staff_chat, UNDELIVERABLE.format(id=delivery.ticket_id, error=error))

        return Courier(self.handoff, "telegram", send, on_undeliverable=tell_staff)

    async def on_staff_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A staff member replied to a message in the staff chat: if it announces a ticket, answer the citizen."""
        message = update.effective_message
        if message is None or message.reply_to_message is None:
            return
        before = await asyncio.to_thread(self.handoff.ticket_by_ref, self.ref(message.reply_to_message.message_id))
        if before is None:
            return  # an ordinary conversation in the staff chat: the channel's handlers decide
        ticket = await asyncio.to_thread(self.handoff.staff_reply, self.ref(message.reply_to_message.message_id),
                                         message.text or "")
        if ticket is not None:
            text = (ALREADY_CLOSED if before.status == "closed" else CLOSED if ticket.status == "closed" else SENT)
            await self.pump(context.bot)
            await message.reply_text(text.format(id=ticket.id))
        raise ApplicationHandlerStop
