"""Faults at the Zalo edge: the OA message API answers 429 / 5xx, hangs, drops the connection, sends cut-off JSON,
refuses connections, or delivers a message and then never answers. Over real HTTP against the fake: only failures
that prove Zalo did not take a message are retried (a refused connection, 429, 503), boundedly; a failure that may
hide a delivered message is logged and never sent again, with no apology on top; the server keeps answering."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from fake_zalo import FakeZalo

from bot.channels.zalo import ZALO
from bot.engine.phrases import APOLOGY, call
from bot.service.desk import Desk
from tests.test_zalo import zalo_server

# The apology with the shipped knowledge base's hotline and an error id.
FAILED = re.compile(re.escape(APOLOGY).replace(r"\{hotline\}", "(?P<hotline>.+)").replace(r"\{error_id\}",
                                                                                         "(?P<id>[0-9a-f]{8})"))


def apologies(sent: list) -> list:
    return [m for s in sent if (m := FAILED.fullmatch(s.text))]


@pytest.fixture(scope="module")
def desk(shipped):
    desk = Desk(shipped, rate_count=0)
    yield desk
    desk.close()


@contextlib.asynccontextmanager
async def bot_for(zalo: FakeZalo, desk: Desk, folder, backoff: float = 0.05):
    """`python -m bot serve`'s app on a real port; the OA API timeout is 1 s, retry pauses are short."""
    async with zalo_server(zalo, desk, folder, CCHC_ZALO_TIMEOUT="1") as (server, _):
        server.app[ZALO].client.backoff = backoff
        yield server


async def answered(zalo: FakeZalo, user: str, timeout: float = 60) -> list:
    """Wait until the user's answer (or an apology) is complete: its last message carries buttons, or is FAILED."""
    def done() -> bool:
        return any(s.buttons or FAILED.fullmatch(s.text) for s in zalo.sent if s.user_id == user)

    async with zalo._changed:
        await asyncio.wait_for(zalo._changed.wait_for(done), timeout)
    return [s for s in zalo.sent if s.user_id == user]


async def ask(zalo: FakeZalo, server: TestServer, user: str, text: str) -> list:
    status, _ = await zalo.deliver(str(server.make_url("/zalo/webhook")), zalo.text_event(user, text))
    assert status == 200
    return await answered(zalo, user)


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("kind", ["429", "503"])
def test_a_fault_that_proves_nothing_was_delivered_is_retried_and_the_answer_arrives_once(kind, desk, tmp_path,
                                                                                        caplog):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as server:
            zalo.break_next(kind, times=2)  # two faults; the third attempt gets through
            sent = await ask(zalo, server, "citizen-1", "lệ phí đăng ký khai sinh")
            assert not apologies(sent)
            assert [s.text for s in sent].count(sent[0].text) == 1  # nothing delivered twice
            assert sum(1 for s in sent if s.buttons) == 1
            assert zalo.calls == len(sent) + 2
            assert [r["error"] for r in zalo.refused] == [kind, kind]

    with caplog.at_level(logging.WARNING, logger="bot.zalo"):
        run(scenario())
    retries = [r.getMessage() for r in caplog.records if "sending again" in r.getMessage()]
    assert len(retries) == 2 and all("attempt" in m for m in retries)


@pytest.mark.parametrize("kind", ["500", "502", "504", "drop", "hang", "garbage"])
def test_a_fault_that_may_hide_a_delivery_is_not_retried_and_gets_no_apology(kind, desk, tmp_path, caplog):
    """The request went out and the answer was lost: Zalo may have delivered the message, so it is not sent again
    (a citizen would get it twice) and no apology follows it (they would get the answer plus an apology)."""
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as server:
            zalo.break_next(kind, times=5)  # a retry would meet the fault again and show as a second call
            status, _ = await zalo.deliver(str(server.make_url("/zalo/webhook")),
                                           zalo.text_event("citizen-m", "lệ phí đăng ký khai sinh"))
            assert status == 200
            await server.app[ZALO].drain()
            assert zalo.calls == 1 and zalo.sent == []  # one try, no resend, no apology
            assert [r["error"] for r in zalo.refused] == [kind]

    with caplog.at_level(logging.WARNING, logger="bot.zalo"):
        run(scenario())
    assert any("may not have been delivered" in r.getMessage() and "not sent again" in r.getMessage()
               for r in caplog.records)
    assert not any("sending again" in r.getMessage() for r in caplog.records)


def test_delivered_then_the_connection_hangs_gives_exactly_one_answer_and_no_apology(desk, tmp_path, caplog):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as server:
            zalo.break_next("deliver_hang")  # Zalo delivers the answer, then its response never comes back
            status, _ = await zalo.deliver(str(server.make_url("/zalo/webhook")),
                                           zalo.text_event("citizen-h", "lệ phí đăng ký kết hôn"))
            assert status == 200
            await server.app[ZALO].drain()  # the bot gave up waiting (1 s timeout) and went on
            sent = [s for s in zalo.sent if s.user_id == "citizen-h"]
            assert len(sent) == 1 and "kết hôn" in sent[0].text.lower() and sent[0].buttons  # exactly one answer
            assert not apologies(sent) and zalo.calls == 1
            assert sent[0].quota_type == "reply"

    with caplog.at_level(logging.WARNING, logger="bot.zalo"):
        run(scenario())
    assert any("may not have been delivered" in r.getMessage() for r in caplog.records)


def test_a_refused_connection_is_retried_and_the_answer_arrives_once(desk, tmp_path, caplog):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path, backoff=0.3) as server:
            server.app[ZALO].client.attempts = 6  # pauses 0.3, 0.6, 1.2… s: time enough to listen again
            await ask(zalo, server, "warm", "xin chào")  # a pooled connection exists: refuse() closes it too
            await zalo.refuse()
            status, _ = await zalo.deliver(str(server.make_url("/zalo/webhook")),
                                           zalo.text_event("citizen-c", "lệ phí đăng ký khai sinh"))
            assert status == 200
            deadline = asyncio.get_running_loop().time() + 30
            while not any("refused the connection" in r.getMessage() for r in caplog.records):
                assert asyncio.get_running_loop().time() < deadline, "the bot never tried to connect"
                await asyncio.sleep(0.02)
            calls = zalo.calls
            await zalo.reopen()
            sent = await answered(zalo, "citizen-c")
            assert calls == 1  # the refused attempts never reached Zalo (1: the warm-up)
            assert not apologies(sent) and sum(1 for s in sent if s.buttons) == 1
            assert [s.text for s in sent].count(sent[0].text) == 1

    with caplog.at_level(logging.WARNING, logger="bot.zalo"):
        run(scenario())


def test_retry_after_of_a_429_is_honoured(desk, tmp_path):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path, backoff=0.01) as server:
            await ask(zalo, server, "warm", "xin chào")
            zalo.break_next("429", times=1, retry_after=1)
            loop = asyncio.get_running_loop()
            start = loop.time()
            sent = await ask(zalo, server, "citizen-2", "xin chào")
            assert loop.time() - start >= 1.0  # waited as told, not the 0.01 s backoff
            assert not apologies(sent)

    run(scenario())


def test_retries_are_bounded_a_lost_answer_is_logged_and_the_server_keeps_answering(desk, tmp_path, caplog):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as server:
            zalo.break_next("503", times=1000)
            status, _ = await zalo.deliver(str(server.make_url("/zalo/webhook")),
                                           zalo.text_event("citizen-3", "làm căn cước cần giấy tờ gì"))
            assert status == 200  # acknowledged at once: Zalo will not deliver it again
            await server.app[ZALO].drain()
            assert zalo.calls == 6  # 3 attempts for the answer, 3 for the apology, then it gives up
            assert zalo.sent == []
            zalo._breaks.clear()
            sent = await ask(zalo, server, "citizen-4", "lệ phí đăng ký kết hôn")
            assert any(s.buttons for s in sent)
            async with ClientSession() as http, http.get(server.make_url("/healthz")) as r:
                assert r.status == 200

    with caplog.at_level(logging.WARNING, logger="bot.zalo"):
        run(scenario())
    lost = [r for r in caplog.records if "not answered" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.ERROR
    assert "citizen-3" in lost[0].getMessage() and "message 1 of" in lost[0].getMessage()
    assert "503" in lost[0].exc_text
    assert any("apology to citizen-3 was not sent" in r.getMessage() for r in caplog.records)


def test_a_refusal_in_zalos_body_gets_an_apology_with_the_hotline(desk, tmp_path, caplog):
    """An error code in Zalo's body proves the answer was not delivered: the citizen is told, with the hotline."""
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as server:
            zalo.fail_next(-32, "Quota exceeded")
            sent = await ask(zalo, server, "citizen-5", "đăng ký thường trú")
            assert zalo.calls == 2 and len(sent) == 1 and len(apologies(sent)) == 1
            return apologies(sent)[0]

    with caplog.at_level(logging.WARNING, logger="bot.zalo"):
        apology = run(scenario())
    assert apology["hotline"] == call(desk.assistant.hotline) == "Tổng đài hỗ trợ Cổng Dịch vụ công quốc gia 18001096"
    assert any("not answered" in r.getMessage() and apology["id"] in r.getMessage() for r in caplog.records)
