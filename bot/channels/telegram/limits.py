"""Telegram's flood limits kept on our side, at the cap and fair between chats.

Telegram lets a bot send about 30 messages a second overall, one a second in one chat and 20 a minute in one group
(https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this); above them it answers 429 with
`retry_after`. python-telegram-bot's `AIORateLimiter` keeps the overall and group limits, not the per-chat one, and
on any 429 halts every chat's messages. Here each chat waits for its own next slot first (one a second, or one
every three seconds in a group), and only then takes the next overall slot, first come first served: one busy
chat cannot hold back the others, and the overall pace stays just under 30 a second. A 429 that still comes
delays only the chat it was for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

log = logging.getLogger("bot.telegram")

# Methods that send a message (and so count against the limits); everything else goes straight through.
MESSAGES = {"sendMessage", "sendPhoto", "sendDocument", "copyMessage", "forwardMessage"}
MARGIN = 1.02  # a little slower than the limits, for the clock and the network between us and Telegram


class FairRateLimiter(BaseRateLimiter[int]):
    """At most `per_second` messages a second overall, one per `chat_interval` seconds in a chat and
    `group_per_minute` a minute in a group; a 429 is retried up to `max_retries` times after its `retry_after`."""

    def __init__(self, per_second: float = 30.0, chat_interval: float = 1.0, group_per_minute: int = 20,
                 max_retries: int = 5):
        self.spacing = MARGIN / per_second
        self.chat_interval = chat_interval * MARGIN
        self.group_interval = 60.0 / group_per_minute * MARGIN
        self.max_retries = max_retries
        self._next = 0.0  # the next overall slot (event-loop time)
        self._chats: dict[int | str, _Chat] = {}

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        chat_id = data.get("chat_id")
        if endpoint not in MESSAGES or chat_id is None:
            return await callback(*args, **kwargs)
        retries = self.max_retries if rate_limit_args is None else rate_limit_args
        for attempt in range(retries + 1):
            await self._slot(chat_id)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as e:
                if attempt == retries:
                    raise
                wait = _seconds(e.retry_after) + 0.1
                log.info("Telegram: 429 cho chat %s, gửi lại sau %.1f giây", chat_id, wait)
                chat = self._chat(chat_id)
                chat.next = max(chat.next, asyncio.get_running_loop().time() + wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _chat(self, chat_id: int | str) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            if len(self._chats) > 10_000:  # forget chats whose slot has passed
                now = asyncio.get_running_loop().time()
                for key in [k for k, c in self._chats.items() if c.next < now and not c.lock.locked()]:
                    del self._chats[key]
            chat = self._chats[chat_id] = _Chat()
        return chat

    async def _slot(self, chat_id: int | str) -> None:
        """Wait for this chat's next slot, then for the next overall one; the message goes out on return."""
        loop = asyncio.get_running_loop()
        chat = self._chat(chat_id)
        group = isinstance(chat_id, str) or int(chat_id) < 0
        async with chat.lock:  # a chat's messages go one after another
            delay = chat.next - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            at = max(now, self._next)
            self._next = at + self.spacing
            if at > now:
                await asyncio.sleep(at - now)
            chat.next = loop.time() + (self.group_interval if group else self.chat_interval)


class _Chat:
    """One chat's place: when its next message may go, and the lock that keeps its messages in order."""

    __slots__ = ("lock", "next")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.next = 0.0


def _seconds(retry_after) -> float:
    """RetryAfter.retry_after is an int or a timedelta, by python-telegram-bot version and settings."""
    return retry_after.total_seconds() if hasattr(retry_after, "total_seconds") else float(retry_after)
