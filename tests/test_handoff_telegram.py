"""Handoff round trip through the fake Telegram server: a declined citizen asks for a person, the staff chat gets
the ticket, a staff reply there reaches the citizen, /xong closes it — real python-telegram-bot, real question log."""

from __future__ import annotations

from dataclasses import replace

from bot.channels.telegram import ALLOWED_UPDATES, TelegramChannel
from bot.service.desk import Desk
from bot.service.handoff import BUTTON, Handoff
from bot.service.qlog import QuestionLog
from tests.fake_telegram import FakeTelegram
from tests.test_telegram_channel import loop, run  # noqa: F401  (loop is a fixture: one event loop in a thread)

STAFF_CHAT = -100500
STAFF = 555
CITIZEN = 1001


async def round_trip(cfg, assistant, log: QuestionLog) -> FakeTelegram:
    cfg = replace(cfg, telegram=replace(cfg.telegram, staff_chat=str(STAFF_CHAT)))
    desk = Desk(assistant, log=log, handoff=Handoff(log, assistant.data.hotline))
    channel = TelegramChannel(desk, cfg, retry_delay=0.05, typing_after=5.0)
    fake = await FakeTelegram().start()
    app = channel.build(fake.token, fake.base_url)
    await app.initialize()
    await app.updater.start_polling(poll_interval=0, timeout=1, allowed_updates=ALLOWED_UPDATES)
    await app.start()
    await app.post_init(app)  # what run_polling and run_webhook call: starts the staff relay
    try:
        fake.text(CITIZEN, "thủ tục nuôi cá sấu làm cảnh ở đâu")
        [declined] = await fake.wait_for_messages(CITIZEN)
        button = next(b for b in declined.buttons if b["text"] == BUTTON[0])
        fake.click(CITIZEN, declined, button["callback_data"])
        [opened] = await fake.wait_for_messages(CITIZEN, after=1)
        assert "phiếu số 1" in opened.text and "cán bộ" in opened.text

        [notice] = await fake.wait_for_messages(STAFF_CHAT)
        assert "Yêu cầu gặp cán bộ số 1" in notice.text and "kênh telegram" in notice.text
        assert "thủ tục nuôi cá sấu làm cảnh ở đâu" in notice.text and str(CITIZEN) not in notice.text
        assert notice.reply_markup == {"force_reply": True, "input_field_placeholder": "Trả lời phiếu số 1"}

        fake.text(STAFF, "Chào bạn, việc này do UBND xã nơi bạn ở hướng dẫn.", chat=STAFF_CHAT, reply_to=notice)
        [answer] = await fake.wait_for_messages(CITIZEN, after=2)
        assert answer.text == "Cán bộ trả lời yêu cầu số 1 của bạn:\n\nChào bạn, việc này do UBND xã nơi bạn ở hướng dẫn."
        [sent] = await fake.wait_for_messages(STAFF_CHAT, after=1)
        assert sent.text == "Đã gửi câu trả lời tới người dân (phiếu số 1)."

        fake.text(STAFF, "/xong", chat=STAFF_CHAT, reply_to=notice)
        [closed] = await fake.wait_for_messages(CITIZEN, after=3)
        assert "đã đóng yêu cầu số 1" in closed.text
        [done] = await fake.wait_for_messages(STAFF_CHAT, after=2)
        assert done.text == "Đã đóng phiếu số 1 và báo cho người dân."

        fake.text(STAFF, "Còn thiếu gì không?", chat=STAFF_CHAT, reply_to=notice)  # a closed ticket
        [late] = await fake.wait_for_messages(STAFF_CHAT, after=3)
        assert "đã đóng" in late.text and len(fake.messages(CITIZEN)) == 4

        fake.text(CITIZEN, "/canbo")  # a new request opens a new ticket, announced to staff
        [again] = await fake.wait_for_messages(CITIZEN, after=4)
        assert "phiếu số 2" in again.text
        [second] = await fake.wait_for_messages(STAFF_CHAT, after=4)
        assert "Yêu cầu gặp cán bộ số 2" in second.text and "qua lệnh /canbo" in second.text
    finally:
        await app.post_stop(app)
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        await fake.close()
        desk.close()
    return fake


def test_handoff_round_trip(loop, small_index, encoder, tmp_path):  # noqa: F811
    from bot.engine.assistant import Assistant

    assistant = Assistant(small_index, encoder=encoder).load()
    log = QuestionLog(tmp_path / "questions.db", b"secret")
    fake = run(loop, round_trip(small_index, assistant, log))
    assert fake.problems == []
    log = QuestionLog(tmp_path / "questions.db", b"secret")  # the desk closed its log when it stopped
    handoff = Handoff(log)
    assert handoff.ticket(1).status == "closed" and handoff.ticket(2).status == "open"
    assert handoff.pending_replies("telegram") == [] and handoff.pending_tickets() == []
    log.close()
