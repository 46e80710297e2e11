"""Human handoff through the desk and the real question log: tickets, staff notification, replies delivered back."""

from __future__ import annotations

import sqlite3
from typing import get_args

import pytest

from bot.engine.answer import Kind
from bot.service.handoff import BUTTON, KINDS, Handoff, is_request, reason_of, staff_text
from bot.service.qlog import QuestionLog


def test_staff_read_every_kind_of_answer_in_words():
    assert set(KINDS) == set(get_args(Kind))


@pytest.mark.parametrize("text", ["/canbo", "/canbo@TroLyCCHCBot", "Tôi muốn gặp cán bộ", "cho tôi gap can bo",
                                  "Tôi muốn nói chuyện với người thật", "GẶP CÁN BỘ!", BUTTON[1]])
def test_requests(text):
    assert is_request(text)


@pytest.mark.parametrize("text", ["cán bộ công chức cần giấy tờ gì", "gặp khó khăn khi nộp hồ sơ", "người nước ngoài",
                                  "/canbonus", "", "đăng ký khai sinh"])
def test_not_requests(text):
    assert not is_request(text)


def test_reason():
    assert reason_of("/canbo") == "command" and reason_of(BUTTON[1]) == "button" and reason_of("gặp cán bộ") == "words"


@pytest.fixture
def desk(small_index, encoder, monkeypatch):
    from bot.engine.assistant import Assistant
    from bot.service.desk import open_desk

    monkeypatch.setenv("LOG_HASH_KEY", "test key")
    desk = open_desk(small_index, Assistant(small_index, encoder=encoder).load())
    yield desk
    desk.close()


def test_round_trip_through_the_desk(desk):
    handoff: Handoff = desk.handoff
    first = desk.ask("telegram", "4242", "Đăng ký khai sinh cần giấy tờ gì? sđt tôi 0912345678")
    declined = desk.ask("telegram", "4242", "thủ tục nuôi cá sấu làm cảnh ở đâu")
    assert first.answer.kind == "answer" and BUTTON not in first.follow_ups
    assert declined.answer.kind == "decline" and BUTTON in declined.follow_ups
    desk.feedback(declined.question_id, -1, channel="telegram", user="4242")

    reply = desk.ask("telegram", "4242", BUTTON[1])  # the button's question text
    assert reply.answer.kind == "handoff" and reply.question_id is None
    text = reply.answer.parts[0][1]
    assert "phiếu số 1" in text and "cán bộ" in text and "gọi" in text

    [ticket] = handoff.pending_tickets()
    assert ticket.channel == "telegram" and ticket.reason == "button" and ticket.status == "open"
    assert [t["question"] for t in ticket.turns] == ["Đăng ký khai sinh cần giấy tờ gì? sđt tôi [số điện thoại]",
                                                     "thủ tục nuôi cá sấu làm cảnh ở đâu"]
    notice = staff_text(ticket)
    assert "số 1" in notice and "không trả lời được 👎" in notice and "0912345678" not in notice
    assert "Trả lời (reply)" in notice

    again = desk.ask("telegram", "4242", "/canbo")
    assert "đang chờ cán bộ" in again.answer.parts[0][1]
    assert len(handoff.pending_tickets()) == 1

    handoff.mark_notified(ticket.id, "777")
    assert handoff.pending_tickets() == []
    assert handoff.staff_reply("778", "tin khác trong nhóm") is None  # not a ticket: ignored
    assert handoff.staff_reply("777", "Chào bạn, thủ tục này do UBND xã giải quyết.").status == "answered"
    [delivery] = handoff.pending_replies("telegram")
    assert handoff.pending_replies("zalo") == []
    assert delivery.address == "4242"
    assert delivery.text == "Cán bộ trả lời yêu cầu số 1 của bạn:\n\nChào bạn, thủ tục này do UBND xã giải quyết."
    handoff.mark_delivered(delivery)
    assert handoff.pending_replies("telegram") == []

    assert handoff.staff_reply("777", "/xong").status == "closed"
    [closing] = handoff.pending_replies("telegram")
    assert "đã đóng yêu cầu số 1" in closing.text
    handoff.mark_delivered(closing)
    raw = sqlite3.connect(desk.log.path)
    assert raw.execute("SELECT address, status FROM tickets").fetchall() == [(None, "closed")]  # address forgotten
    raw.close()
    assert desk.ask("telegram", "4242", "gặp cán bộ").answer.parts[0][1].count("phiếu số 2") == 1  # a new ticket


def test_words_request_keeps_what_was_asked(tmp_path):
    log = QuestionLog(tmp_path / "q.db", b"s")
    try:
        handoff = Handoff(log)
        answer = handoff.open_ticket("zalo", "u1", "cho tôi gặp cán bộ về hồ sơ H12.34-240101-0001 của tôi")
        assert answer.kind == "handoff" and "phiếu số 1" in answer.parts[0][1]
        [ticket] = handoff.pending_tickets()
        assert ticket.turns == [{"question": "cho tôi gặp cán bộ về hồ sơ [mã hồ sơ] của tôi", "kind": None,
                                 "title": None, "feedback": None}]
        assert "(chưa có câu hỏi nào)" not in staff_text(ticket)
    finally:
        log.close()


def test_handoff_off_when_log_is_off(small_index, encoder, monkeypatch):
    from bot.config import load_config
    from bot.engine.assistant import Assistant
    from bot.service.desk import open_desk

    monkeypatch.setenv("CCHC_LOG_ENABLED", "false")
    desk = open_desk(load_config(small_index.base / "config.toml"), Assistant(small_index, encoder=encoder).load())
    try:
        assert desk.handoff is None
        assert desk.ask("web", "u", "thủ tục nuôi cá sấu làm cảnh").follow_ups == []
    finally:
        desk.close()


def test_a_failing_database_gets_an_apology_with_the_hotline(tmp_path, caplog):
    log = QuestionLog(tmp_path / "q.db", b"s")
    handoff = Handoff(log, {"name": "Tổng đài thử", "number": "1900 0000"})
    log.db.close()  # the database is gone (a full disk or a lock behaves alike: sqlite3 raises)
    answer = handoff.open_ticket("web", "u", "/canbo")
    assert answer.kind == "error" and "Tổng đài thử 1900 0000" in answer.parts[0][1] and "mã lỗi" in answer.parts[0][1]
    assert "error" in caplog.text and "handoff ticket" in caplog.text


def test_courier_delivers_on_its_channel_retries_and_drops_the_unreachable(tmp_path):
    import asyncio

    from bot.service.handoff import Courier, Undeliverable

    log = QuestionLog(tmp_path / "q.db", b"s")
    handoff = Handoff(log)
    for n, (channel, user) in enumerate([("zalo", "z-ok"), ("zalo", "z-blocked"), ("zalo", "z-flaky"), ("web", "w")]):
        handoff.open_ticket(channel, user, "/canbo")
        handoff.mark_notified(n + 1, f"ref{n + 1}")
        handoff.staff_reply(f"ref{n + 1}", f"trả lời {n + 1}")
    sent: list[tuple[str, str]] = []
    dropped: list[int] = []
    flaky = {"z-flaky": 1}

    async def send(address: str, text: str) -> None:
        if address == "z-blocked":
            raise Undeliverable("người dùng đã chặn OA")
        if flaky.get(address):
            flaky[address] -= 1
            raise ConnectionError("Zalo không phản hồi")
        sent.append((address, text))

    async def report(delivery, error) -> None:
        dropped.append(delivery.ticket_id)

    courier = Courier(handoff, "zalo", send, interval=0.01, on_undeliverable=report)
    try:
        with pytest.raises(ConnectionError):
            asyncio.run(courier.pump())  # the flaky one stays queued
        assert sent == [("z-ok", "Cán bộ trả lời yêu cầu số 1 của bạn:\n\ntrả lời 1")] and dropped == [2]
        assert [d.address for d in handoff.pending_replies("zalo")] == ["z-flaky"]

        async def run_until_done():
            stopping = asyncio.Event()
            task = asyncio.create_task(courier.run(stopping))
            while handoff.pending_replies("zalo"):
                await asyncio.sleep(0.01)
            stopping.set()
            await task

        asyncio.run(run_until_done())
        assert sent[-1] == ("z-flaky", "Cán bộ trả lời yêu cầu số 3 của bạn:\n\ntrả lời 3")
        assert [d.address for d in handoff.pending_replies("web")] == ["w"]  # another channel's reply waits for it
    finally:
        log.close()
