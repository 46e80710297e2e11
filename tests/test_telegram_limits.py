"""Telegram's flood limits at their cap, fair between chats: python-telegram-bot's ExtBot with our rate limiter,
over real HTTP to the fake Bot API enforcing the limits (429 + retry_after)."""

from __future__ import annotations

import asyncio
import os

import pytest
from telegram.error import RetryAfter
from telegram.ext import ExtBot

from bot.channels.telegram.limits import FairRateLimiter
from tests.fake_telegram import FakeTelegram

os.environ.setdefault("PTB_TIMEDELTA", "1")  # as the channel sets it: retry_after as a timedelta, without warnings


async def _with_bot(body, limiter: FairRateLimiter | None = None):
    fake = await FakeTelegram(limits=True).start()
    bot = ExtBot(fake.token, base_url=fake.base_url, rate_limiter=limiter or FairRateLimiter())
    await bot.initialize()
    try:
        return await body(fake, bot)
    finally:
        await bot.shutdown()
        await fake.close()


def test_the_fake_refuses_a_second_message_in_a_chat_within_a_second():
    async def body(fake, bot):
        plain = ExtBot(fake.token, base_url=fake.base_url)  # no rate limiter: the fake must say 429
        await plain.initialize()
        await plain.send_message(7001, "một")
        try:
            with pytest.raises(RetryAfter):
                await plain.send_message(7001, "hai")
        finally:
            await plain.shutdown()
        return fake.limited

    assert asyncio.run(_with_bot(body)) == 1


def test_a_busy_chat_does_not_hold_back_the_others_and_no_limit_is_hit():
    async def body(fake, bot):
        loop = asyncio.get_running_loop()
        started = loop.time()
        busy = [bot.send_message(7001, f"câu {i}") for i in range(4)]
        others = [bot.send_message(7100 + i, "một câu") for i in range(40)]
        await asyncio.gather(*busy, *others)
        return loop.time() - started

    fake_state = {}

    async def run(fake, bot):
        seconds = await body(fake, bot)
        fake_state.update(limited=fake.limited, sent=list(fake.sent), problems=list(fake.problems))
        return seconds

    seconds = asyncio.run(_with_bot(run))
    sent = fake_state["sent"]
    assert fake_state["limited"] == 0 and fake_state["problems"] == [] and len(sent) == 44
    busy_at = [m.at for m in sent if m.chat_id == 7001]
    assert [m.text for m in sent if m.chat_id == 7001] == [f"câu {i}" for i in range(4)]  # in order
    assert all(b - a >= 1.0 for a, b in zip(busy_at, busy_at[1:]))
    # the 40 other chats went out while the busy chat waited for its second slot: at the overall pace, not after it
    others_done = max(m.at for m in sent if m.chat_id != 7001)
    assert others_done < busy_at[1] + 0.5
    # 44 messages at under 30 a second take at least 1.4 s, and the busy chat's four need 3 s
    assert seconds >= 3.0


def test_a_429_delays_only_its_own_chat():
    async def run(fake, bot):
        fake.fail("sendMessage", 429, retry_after=1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = asyncio.ensure_future(bot.send_message(7001, "bị từ chối rồi gửi lại"))
        await asyncio.sleep(0.05)
        await bot.send_message(7002, "không phải chờ")
        other = loop.time() - started
        await first
        return other, loop.time() - started, [m.chat_id for m in fake.sent]

    other, total, chats = asyncio.run(_with_bot(run))
    assert chats == [7002, 7001]  # delivered once each; the refused one after its retry_after
    assert other < 0.5 and total >= 1.0
