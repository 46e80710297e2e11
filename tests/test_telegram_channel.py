"""The Telegram channel end to end: the real python-telegram-bot polling loop and webhook server over HTTP against
the local fake Bot API server (tests/fake_telegram.py), answering from the shipped knowledge base."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram import Update
from telegram.ext import TypeHandler

from bot.channels.render import html_visible, split_html, telegram_html
from bot.channels.telegram import ALLOWED_UPDATES, EDITED_NOTE, NOT_YOURS, TelegramChannel
from bot.config import ROOT
from bot.engine.answer import Answer, Source
from bot.engine.phrases import NON_TEXT
from bot.service.desk import LONG_NOTE, Desk, Reply
from bot.service.handoff import BUTTON as HANDOFF_BUTTON
from bot.service.handoff import Handoff
from bot.service.qlog import QuestionLog
from tests.fake_telegram import ApiError, FakeTelegram, html_text

ADMIN = 777
HOTLINE = "18001096"


# --- harness: one event loop in a thread, one fake server and one polling bot for the module --------------------

@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def run(loop, coro, timeout: float = 90):
    """Run a coroutine on the harness loop and return its result."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def make_channel(assistant, log: QuestionLog | None = None) -> TelegramChannel:
    cfg = assistant.cfg
    cfg = replace(cfg, telegram=replace(cfg.telegram, admins=(str(ADMIN),)))
    handoff = Handoff(log, assistant.data.hotline) if log is not None else None
    desk = Desk(assistant, log=log, handoff=handoff, rate_count=8)
    return TelegramChannel(desk, cfg, retry_delay=0.05, typing_after=0.0, timeout=3.0)


class Handled:
    """Which updates the application has finished with: a handler in a last group runs once the others are done
    (python-telegram-bot handles an update's groups in order), so a test waits for that instead of sleeping."""

    def __init__(self, app):
        self.ids: set[int] = set()
        self.changed = asyncio.Condition()
        app.add_handler(TypeHandler(Update, self.done), group=99)

    async def done(self, update, context) -> None:
        self.ids.add(update.update_id)
        async with self.changed:
            self.changed.notify_all()

    async def wait(self, *update_ids: int, timeout: float = 60) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: set(update_ids) <= self.ids), timeout)


class Polling:
    """A fake server and the real python-telegram-bot Application polling it."""

    def __init__(self, channel: TelegramChannel):
        self.channel = channel
        self.fake = FakeTelegram()
        self.app = None

    async def start(self):
        await self.fake.start()
        self.app = self.channel.build(self.fake.token, self.fake.base_url)
        self.handled = Handled(self.app)
        await self.app.initialize()
        await self.app.updater.start_polling(poll_interval=0, timeout=1, allowed_updates=ALLOWED_UPDATES)
        await self.app.start()
        return self

    async def stop(self):
        await self.app.updater.stop()
        await self.app.stop()
        await self.app.shutdown()
        await self.fake.close()
        self.channel.desk.close()

    async def ask(self, user: int, text: str, **kw):
        """The citizen types; returns the bot's new messages once the bot has finished with the message."""
        before = len(self.fake.messages(kw.get("chat", user)))
        return await self.reply(kw.get("chat", user), before, self.fake.text(user, text, **kw))

    async def reply(self, chat: int, before: int, update_id: int):
        """The bot's new messages to `chat` (beyond the first `before`) once it has finished with the update."""
        await self.handled.wait(update_id)
        return self.fake.messages(chat)[before:]


@pytest.fixture(scope="module")
def bot(loop, shipped, tmp_path_factory):
    log = QuestionLog(tmp_path_factory.mktemp("qlog") / "questions.db", b"test-secret")
    harness = run(loop, Polling(make_channel(shipped, log=log)).start())
    harness.log = log
    yield harness
    run(loop, harness.stop())


@pytest.fixture(autouse=True)
def no_problems(request):
    """Whatever the bot sent, the real API would have accepted (except faults a test injects on purpose)."""
    yield
    if "bot" in request.fixturenames:
        harness = request.getfixturevalue("bot")
        assert harness.fake.problems == []


# --- end to end ----------------------------------------------------------------------------------------------------

def test_question_answered_with_sources_and_buttons(loop, bot):
    async def scenario():
        sent = await bot.ask(1001, "lệ phí cấp hộ chiếu")
        return sent, bot.fake.calls_of("sendMessage")[-1]

    sent, call = run(loop, scenario())
    assert len(sent) == 1
    message = sent[0]
    assert call.params["parse_mode"] == "HTML"
    assert message.text.startswith("Cấp hộ chiếu") and "Phí, lệ phí:" in message.text
    assert "Nguồn:" in message.text and "ngày" in message.text
    assert '<a href="https://' in message.html  # the source links to its official page
    labels = [b["text"] for b in message.buttons if "callback_data" in b and not b["callback_data"].startswith("fb:")]
    assert labels and "Lệ phí" not in labels  # it was asked: the buttons offer the other sections
    assert set(labels) <= {"Hồ sơ", "Thời hạn", "Nơi nộp", "Nộp trực tuyến"}
    urls = [b["url"] for b in message.buttons if "url" in b]
    assert urls and all(u.startswith("https://") for u in urls)
    feedback = [b["callback_data"] for b in message.buttons if b.get("callback_data", "").startswith("fb:")]
    assert feedback == [f"fb:{feedback[0].split(':')[1]}:1:1001", f"fb:{feedback[0].split(':')[1]}:-1:1001"]
    assert bot.fake.calls_of("sendChatAction")[-1].params["action"] == "typing"


def test_follow_up_by_button_and_by_text(loop, bot):
    async def scenario():
        first = (await bot.ask(1002, "làm hộ chiếu ở đâu"))[-1]
        data = next(b["callback_data"] for b in first.buttons if b["text"] == "Lệ phí")
        before = len(bot.fake.messages(1002))
        by_button = (await bot.reply(1002, before, bot.fake.click(1002, first, data)))[-1]
        answered = [c for c in bot.fake.calls_of("answerCallbackQuery") if not c.error]
        typed = (await bot.ask(1002, "còn thời hạn thì sao?"))[-1]
        return first, by_button, typed, answered

    first, by_button, typed, answered = run(loop, scenario())
    title = first.text.split("\n")[0]
    assert "hộ chiếu" in title.lower()
    assert by_button.text.startswith(title) and "Phí, lệ phí:" in by_button.text
    assert typed.text.startswith(title) and "Thời hạn giải quyết:" in typed.text
    assert answered  # the click was answered


def test_decline_offers_the_closest_entries_as_buttons(loop, bot):
    async def scenario():
        declined = (await bot.ask(1004, "xin hỏi về con mèo nhà tôi"))[-1]
        closest = [b for b in declined.buttons if b.get("callback_data", "").startswith(("q:", "t:"))
                   and b["text"] != HANDOFF_BUTTON[0]]
        before = len(bot.fake.messages(1004))
        return declined, closest, (await bot.reply(1004, before, bot.fake.click(1004, declined,
                                                                                closest[0]["callback_data"])))[-1]

    declined, closest, chosen = run(loop, scenario())
    assert declined.text.startswith("Xin lỗi") and HOTLINE in declined.text and "Có thể bạn muốn hỏi:" in declined.text
    assert closest and all(len(b["callback_data"].encode()) <= 64 for b in closest)
    assert HANDOFF_BUTTON[0] in [b["text"] for b in declined.buttons]
    assert closest[0]["text"].rstrip("…") in declined.text
    assert chosen.text.startswith(closest[0]["text"].rstrip("…"))  # asking the entry's title answers with it


def test_feedback_click_is_stored_and_removes_the_buttons(loop, bot):
    async def scenario():
        answer = (await bot.ask(1003, "lệ phí đăng ký kết hôn"))[-1]
        data = next(b["callback_data"] for b in answer.buttons if b["text"].startswith("👎"))
        clicks = len(bot.fake.calls_of("answerCallbackQuery"))
        await bot.handled.wait(bot.fake.click(1003, answer, data))
        return answer, data, bot.fake.calls_of("answerCallbackQuery")[clicks:], bot.fake.calls_of("editMessageReplyMarkup")

    answer, data, answered, edits = run(loop, scenario())
    question_id = int(data.split(":")[1])
    assert len(data.encode()) <= 64 and data.endswith(":1003")  # the asker's id: only their click counts
    stored = bot.log.question(question_id)  # the real question log
    assert stored is not None and stored["feedback"] == -1 and stored["question"] == "lệ phí đăng ký kết hôn"
    assert stored["channel"] == "telegram" and stored["user_key"] == bot.log.user_key("telegram", "1003")
    assert len(answered) == 1 and not answered[0].error and answered[0].at <= edits[-1].at
    remaining = [b for row in (answer.edits[-1] or {}).get("inline_keyboard", []) for b in row]
    assert not any(b.get("callback_data", "").startswith("fb:") for b in remaining)
    assert any(b.get("callback_data", "").startswith("q:") for b in remaining)  # follow-ups stay
    assert HANDOFF_BUTTON[0] in [b["text"] for b in remaining]  # 👎: a person is offered


def test_non_text_messages_get_a_note(loop, bot):
    async def scenario():
        replies = {}
        for i, kind in enumerate(("sticker", "photo", "voice", "document", "location")):
            user = 1010 + i
            replies[kind] = await bot.reply(user, 0, bot.fake.non_text(user, kind))
        return replies

    for kind, sent in run(loop, scenario()).items():
        assert [m.text for m in sent] == [NON_TEXT], kind


def test_html_in_a_message_is_harmless(loop, bot):
    sent = run(loop, bot.ask(1020, "<b>lệ phí</b> <script>alert(1)</script> khai sinh & <a href='x'>kết hôn</a>"))
    assert sent and "<script" not in sent[-1].html  # nothing the citizen typed is echoed as markup


def test_429_and_5xx_survived_nothing_lost(loop, bot):
    async def scenario():
        bot.fake.fail("getUpdates", 502)
        bot.fake.fail("sendMessage", 429, retry_after=1)
        bot.fake.fail("sendMessage", 503)
        before = len(bot.fake.calls)
        sent = await bot.ask(1030, "thời hạn cấp lý lịch tư pháp")  # returns once the bot is done with it
        return sent, bot.fake.calls[before:], bot.fake.messages(1030)

    sent, calls, all_sent = run(loop, scenario())
    sends = [c for c in calls if c.method == "sendmessage"]
    assert [c.error.split(":")[0] for c in sends] == ["Too Many Requests", "Service Unavailable", ""]
    assert sends[1].at - sends[0].at >= 1.0  # retry_after respected
    assert any(c.method == "getupdates" and c.error == "Bad Gateway" for c in calls)
    assert len(all_sent) == 1 and "lý lịch tư pháp" in all_sent[0].text.lower()  # answered exactly once


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_5xx_that_may_hide_a_delivery_is_not_sent_again_and_gets_no_apology(loop, bot, status, caplog):
    user = 1130 + status % 100  # 1130, 1132, 1134: chats no other test uses

    async def scenario():
        bot.fake.fail("sendMessage", status)  # a resend or an apology would show as a second call
        before = len(bot.fake.calls_of("sendMessage"))
        await bot.ask(user, "thời hạn cấp lý lịch tư pháp")
        return [c for c in bot.fake.calls_of("sendMessage")[before:] if c.params["chat_id"] == user]

    with caplog.at_level(logging.WARNING, logger="bot.telegram"):
        calls = run(loop, scenario())
    assert len(calls) == 1 and calls[0].error  # one try, refused with the 5xx: not sent again, no apology after it
    assert any("may not have been delivered" in r.getMessage() for r in caplog.records)


def test_delivered_then_the_connection_hangs_gives_exactly_one_answer_and_no_apology(loop, bot, caplog):
    async def scenario():
        bot.fake.hang_after_delivery("sendMessage")  # Telegram delivers the answer; its response never comes back
        sent = await bot.ask(1035, "lệ phí đăng ký kết hôn")  # returns once the bot gave up waiting (3 s)
        return sent, [c for c in bot.fake.calls_of("sendMessage") if c.params["chat_id"] == 1035]

    with caplog.at_level(logging.WARNING, logger="bot.telegram"):
        sent, calls = run(loop, scenario())
    assert len(sent) == 1 and "kết hôn" in sent[0].text.lower()  # exactly one answer
    assert len(calls) == 1 and not any("Xin lỗi" in m.text for m in sent)  # not sent again, no apology
    assert any("may not have been delivered" in r.getMessage() for r in caplog.records)


def test_only_the_asker_can_rate_an_answer(loop, bot):
    group = -5002

    async def scenario():
        [answer] = await bot.ask(1201, "lệ phí đăng ký kết hôn", chat=group, mention=True)
        down = next(b["callback_data"] for b in answer.buttons if b["text"].startswith("👎"))
        up = next(b["callback_data"] for b in answer.buttons if b["text"].startswith("👍"))
        before = len(bot.fake.calls_of("answerCallbackQuery"))
        await bot.handled.wait(bot.fake.click(1202, answer, down))  # another member of the group
        stranger = bot.fake.calls_of("answerCallbackQuery")[before:]
        stored_after_stranger = bot.log.question(int(down.split(":")[1]))["feedback"]
        edits_after_stranger = list(answer.edits)
        await bot.handled.wait(bot.fake.click(1201, answer, up))  # the citizen who asked
        return stranger, stored_after_stranger, edits_after_stranger, int(up.split(":")[1]), answer

    stranger, stored_after_stranger, edits_after_stranger, question_id, answer = run(loop, scenario())
    assert [c.params.get("text") for c in stranger] == [NOT_YOURS] and stored_after_stranger is None
    assert edits_after_stranger == [] and len(answer.edits) == 1  # only the asker's click removed the buttons
    assert bot.log.question(question_id)["feedback"] == 1


def test_error_handler_apologises_and_keeps_running(loop, bot):
    async def scenario():
        bot.fake.fail("sendMessage", 503, times=4)  # the first try and the three retries: never taken
        apology = await bot.ask(1040, "đăng ký tạm trú cần gì")
        answer = await bot.ask(1040, "đăng ký tạm trú cần gì")
        return apology, answer

    apology, answer = run(loop, scenario())
    assert "Xin lỗi" in apology[0].text and HOTLINE in apology[0].text and "mã lỗi" in apology[0].text
    assert "tạm trú" in answer[-1].text.lower()


def test_admin_commands_only_for_admins(loop, bot):
    async def scenario():
        ordinary = await bot.ask(1050, "/stats")
        plain = await bot.ask(1051, "stats")
        stats = await bot.ask(ADMIN, "/stats")
        reloaded = await bot.ask(ADMIN, "/reload")
        not_admin_reload = await bot.ask(1050, "/reload")
        return ordinary, plain, stats, reloaded, not_admin_reload

    ordinary, plain, stats, reloaded, not_admin_reload = run(loop, scenario())
    assert "Thống kê" not in ordinary[-1].text and ordinary[-1].text == plain[-1].text
    assert "Thống kê" in stats[-1].text and "Câu hỏi:" in stats[-1].text
    assert "mục" in reloaded[-1].text and "Chỉ mục" in reloaded[-1].text
    assert "Chỉ mục" not in not_admin_reload[-1].text


def test_commands_start_help_contact(loop, bot):
    async def scenario():
        return [(await bot.ask(1060, c))[-1] for c in ("/start", "/help", "/lienhe")]

    start, help_, contact = run(loop, scenario())
    assert start.text.startswith("Xin chào") and "Ví dụ" in start.text
    assert "/lienhe" in help_.text and any("callback_data" in b for b in help_.buttons)
    assert HOTLINE in contact.text and any("url" in b for b in contact.buttons)


def test_groups_answer_only_when_mentioned_or_replied_to(loop, bot):
    group = -5001

    async def scenario():
        await bot.handled.wait(bot.fake.text(1070, "thủ tục đăng ký kết hôn", chat=group))  # members' talk: ignored
        mentioned = await bot.ask(1071, "lệ phí đăng ký kết hôn", chat=group, mention=True)
        replied = await bot.ask(1072, "còn thời hạn thì sao?", chat=group, reply_to=mentioned[-1])
        return mentioned, replied, [c for c in bot.fake.calls_of("sendMessage") if c.params["chat_id"] == group]

    mentioned, replied, calls = run(loop, scenario())
    assert len(bot.fake.messages(group)) == 2
    assert "kết hôn" in mentioned[-1].text.lower() and "Thời hạn giải quyết:" in replied[-1].text
    assert all(c.params.get("reply_parameters", {}).get("message_id") for c in calls)


def test_edited_and_long_messages(loop, bot):
    async def scenario():
        edited = await bot.reply(1080, 0, bot.fake.edit(1080, 5, "làm hộ chiếu ở đâu"))
        long = await bot.ask(1081, "đăng ký khai sinh cần gì " + "xin hỏi thêm " * 300)
        return edited, long

    edited, long = run(loop, scenario())
    assert edited[-1].text.startswith(EDITED_NOTE) and "hộ chiếu" in edited[-1].text.lower()
    assert long[-1].text.startswith(LONG_NOTE.format(limit=1000))


def test_per_user_rate_limit(loop, bot):
    async def scenario():
        for _ in range(8):
            await bot.ask(1090, "xin chào")
        return await bot.ask(1090, "xin chào")

    limited = run(loop, scenario())
    assert "Bạn gửi nhanh quá" in limited[-1].text and limited[-1].reply_markup is None


def test_long_answer_split_into_valid_messages(loop, bot):
    body = "\n".join(f"Bước {i}: nộp <giấy tờ> & chờ kết quả tại bộ phận một cửa của Ủy ban nhân dân xã." for i in range(200))
    reply = Reply(Answer("q", "answer", title="Thủ tục dài", parts=[("Các bước", body)]), question_id=1)

    async def scenario():
        await bot.channel.send(bot.app.bot, 1100, telegram_html(reply), bot.channel.keyboard(reply, 1100))
        return bot.fake.messages(1100)

    sent = run(loop, scenario())
    assert len(sent) >= 4 and all(len(m.html) <= 4096 for m in sent)
    assert [bool(m.reply_markup) for m in sent] == [False] * (len(sent) - 1) + [True]
    assert "".join(m.text for m in sent).count("Bước") == 200


# --- webhook -------------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webhook_checks_the_secret(loop, shipped):
    channel = make_channel(shipped)
    secret = "webhook-secret-0123456789"

    async def scenario():
        fake = await FakeTelegram().start()
        app = channel.build(fake.token, fake.base_url)
        handled = Handled(app)
        port = free_port()
        await app.initialize()
        await app.updater.start_webhook(listen="127.0.0.1", port=port, url_path="telegram", secret_token=secret,
                                        webhook_url="https://bot.example.gov.vn/telegram",
                                        allowed_updates=ALLOWED_UPDATES)
        await app.start()
        try:
            url = f"http://127.0.0.1:{port}/telegram"
            update = {"update_id": 1, "message": fake.message(2001, text="làm thẻ căn cước cần gì")}
            statuses = [await fake.deliver(url, update, "wrong-secret"), await fake.deliver(url, update, None)]
            nothing = list(fake.sent)  # a refused update is never queued: nothing can come of it later
            statuses.append(await fake.deliver(url, update, secret))
            await handled.wait(1)
            return statuses, nothing, fake.messages(2001), fake.webhook, fake.problems
        finally:
            await app.updater.stop()
            await app.stop()
            await app.shutdown()
            await fake.close()
            channel.desk.close()

    statuses, nothing, sent, webhook, problems = run(loop, scenario())
    assert statuses == [403, 403, 200]
    assert nothing == []
    assert len(sent) == 1 and "căn cước" in sent[-1].text.lower()  # the update is answered once
    assert webhook == {"url": "https://bot.example.gov.vn/telegram", "secret_token": secret,
                       "allowed_updates": ALLOWED_UPDATES}
    assert problems == []


def test_serve_takes_the_webhook_on_its_own_port(loop, shipped):
    """`[telegram] on_serve`: the web server answers Telegram's webhook at webhook_url's path, checks the secret,
    answers each update once (a retry of an update already taken gets 200 and nothing more) and registers the
    webhook with Telegram."""
    from aiohttp import ClientSession, web

    from bot.channels.web import make_app

    secret = "serve-webhook-secret-0123456789"

    async def scenario():
        fake = await FakeTelegram().start()
        cfg = shipped.cfg
        cfg = replace(cfg, telegram=replace(cfg.telegram, on_serve=True, base_url=fake.base_url,
                                            webhook_url="https://bot.example.gov.vn/hook/telegram"))
        desk = Desk(shipped, rate_count=0)
        env = {"TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_WEBHOOK_SECRET": secret, "LOG_HASH_KEY": "k-serve-hook"}
        runner = web.AppRunner(make_app(cfg, desk, env=env), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook/telegram"
        try:
            update = {"update_id": 9_100_001, "message": fake.message(2101, text="làm hộ chiếu cần giấy tờ gì")}
            statuses = [await fake.deliver(url, update, "wrong-secret"), await fake.deliver(url, update, None)]
            nothing = list(fake.sent)
            async with ClientSession() as session:
                for body in (b"not json", b"[1, 2]", b'{"update_id": "x"}'):
                    async with session.post(url, data=body, headers={"X-Telegram-Bot-Api-Secret-Token": secret,
                                                                     "Content-Type": "application/json"}) as r:
                        statuses.append(r.status)
            statuses.append(await fake.deliver(url, update, secret))  # answered before its 200
            first = list(fake.messages(2101))
            statuses.append(await fake.deliver(url, update, secret))  # Telegram's retry: taken already
            follow = {"update_id": 9_100_002, "message": fake.message(2101, text="lệ phí bao nhiêu?")}
            statuses.append(await fake.deliver(url, follow, secret))
            await fake.wait_until(lambda: bool(fake.webhook))
            return statuses, nothing, first, fake.messages(2101), fake.webhook, fake.problems
        finally:
            await runner.cleanup()
            await fake.close()
            desk.close()

    statuses, nothing, first, sent, webhook, problems = run(loop, scenario())
    assert statuses == [403, 403, 400, 400, 400, 200, 200, 200]
    assert nothing == []
    assert len(first) == 1 and "hộ chiếu" in first[0].text.lower()
    assert len(sent) == 2, [m.text[:60] for m in sent]  # the retry was not answered again
    assert "hộ chiếu" in sent[1].text.lower() and "lệ phí" in sent[1].text.lower()  # the follow-up kept its subject
    assert webhook == {"url": "https://bot.example.gov.vn/hook/telegram", "secret_token": secret,
                       "allowed_updates": ALLOWED_UPDATES}
    assert problems == []


def test_an_update_is_taken_once_unless_its_worker_died(tmp_path):
    from bot.channels.telegram import STALE_TAKE, take_update
    from bot.service.inbox import Inbox

    now = [1_000_000.0]
    inbox = Inbox(tmp_path / "inbox.db", b"k", clock=lambda: now[0])
    try:
        assert take_update(inbox, 1) == "answer"
        assert take_update(inbox, 1) == "elsewhere"  # a retry while it is being answered
        now[0] += STALE_TAKE + 1
        assert take_update(inbox, 1) == "answer"  # never answered: its worker died; taken over once
        assert take_update(inbox, 1) == "elsewhere"
        assert take_update(inbox, 2) == "answer"
        inbox.take("telegram", "done:2")
        assert take_update(inbox, 2) == "answered"
        now[0] += STALE_TAKE + 1
        assert take_update(inbox, 2) == "answered"  # answered: a late retry is not answered again
    finally:
        inbox.close()


def test_serve_without_the_webhook_settings_says_what_is_missing(loop, shipped):
    from aiohttp import ClientSession, web

    from bot.channels.web import make_app

    async def scenario():
        cfg = shipped.cfg
        cfg = replace(cfg, telegram=replace(cfg.telegram, on_serve=True, webhook_url="http://insecure.example/tg"))
        desk = Desk(shipped, rate_count=0)
        runner = web.AppRunner(make_app(cfg, desk, env={"TELEGRAM_BOT_TOKEN": "123:abc"}), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            async with ClientSession() as session, \
                    session.post(f"http://127.0.0.1:{runner.addresses[0][1]}/tg", json={"update_id": 1}) as r:
                return r.status, await r.json()
        finally:
            await runner.cleanup()
            desk.close()

    status, body = run(loop, scenario())
    assert status == 503
    assert "TELEGRAM_WEBHOOK_SECRET" in body["error"] and "HTTPS" in body["error"]
    assert "123:abc" not in body["error"]


def test_polling_refused_while_serve_takes_the_webhook(shipped, monkeypatch, capsys):
    from bot.channels.telegram import run as run_telegram

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    cfg = replace(shipped.cfg, telegram=replace(shipped.cfg.telegram, on_serve=True))
    assert run_telegram(cfg) == 2
    assert "on_serve" in capsys.readouterr().err


# --- shutdown ------------------------------------------------------------------------------------------------------

def test_sigterm_loses_no_acknowledged_update(loop, shipped, tmp_path):
    """`python -m bot telegram` stopped by SIGTERM in the middle of a burst: every update it acknowledged with a
    getUpdates offset was answered; the others stay queued at Telegram for the next start."""
    async def scenario():
        fake = await FakeTelegram().start()
        env = {**os.environ, "CCHC_CONFIG": str(shipped.cfg.base / "config.toml"), "CCHC_MODEL_THREADS": "1",
               "CCHC_TELEGRAM_BASE_URL": fake.base_url, "TELEGRAM_BOT_TOKEN": fake.token, "HF_HUB_OFFLINE": "1"}
        users = list(range(3001, 3041))
        for user in users:
            fake.text(user, "lệ phí cấp hộ chiếu")
        log = tmp_path / "telegram.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "telegram", cwd=ROOT, env=env,
                                                           stdout=out, stderr=out)
            try:
                await fake.wait_until(lambda: len(fake.sent) >= 3, timeout=120)
                process.terminate()
                await asyncio.wait_for(process.wait(), 60)
            finally:
                if process.returncode is None:
                    process.kill()
                await fake.close()
        answered = [s.chat_id for s in fake.sent]
        return process.returncode, log.read_text(encoding="utf-8"), fake.confirmed, answered, fake.problems

    code, err, confirmed, answered, problems = run(loop, scenario(), timeout=200)
    assert code == 0, err[-2000:]
    acknowledged = {3001 + i for i in range(confirmed - 1)}  # update ids 1.. map to users 3001..
    assert len(acknowledged) >= 3 and sorted(answered) == sorted(acknowledged)  # each exactly once
    assert problems == []


# --- rendering (pure) ----------------------------------------------------------------------------------------------

def test_render_escapes_knowledge_text():
    source = Source("x", "Luật <mới> & cũ", "procedure", "2026-11-21", "https://example.gov.vn/a?b=1&c=\"2\"", 1.0, [])
    answer = Answer("q", "answer", title="A <b>", parts=[("Lệ phí", "50.000 đ <miễn> & giảm"),
                                                          ("", "- **Trẻ <6>:** xem [Cổng](https://x.vn/?a=1&b=2)")],
                    sources=[source],
                    suggestions=["Mục <x>"])
    text = telegram_html(Reply(answer, notes=["<note>"]))
    visible = html_text(text)  # the fake parses it the way Telegram does
    assert "A <b>" in visible and "50.000 đ <miễn> & giảm" in visible and "Mục <x>" in visible
    assert "Luật <mới> & cũ (kiểm tra ngày 21/11/2026)" in visible and "<note>" in visible
    assert 'href="https://example.gov.vn/a?b=1&amp;c=&quot;2&quot;"' in text
    assert '• <b>Trẻ &lt;6&gt;:</b> xem <a href="https://x.vn/?a=1&amp;b=2">Cổng</a>' in text  # light Markdown


words = st.text(alphabet="abcđêơ<>&\"'", min_size=1, max_size=12)
lines = st.lists(words, min_size=1, max_size=30).map(" ".join)
blocks = st.tuples(st.sampled_from(["", "b", "i", "a"]), st.lists(lines, min_size=1, max_size=8).map("\n".join))


@settings(max_examples=150, deadline=None)
@given(st.lists(blocks, min_size=1, max_size=12), st.integers(min_value=80, max_value=600))
def test_split_html_keeps_tags_whole_and_words_unbroken(items, limit):
    import html as h

    parts = []
    for tag, text in items:
        escaped = h.escape(text, quote=False)
        if tag == "a":
            parts.append(f'<a href="https://x.vn/?q=1&amp;r=2">{escaped}</a>')
        elif tag:
            parts.append(f"<{tag}>{escaped}</{tag}>")
        else:
            parts.append(escaped)
    text = "\n\n".join(parts)
    chunks = split_html(text, limit)
    visible = []
    for chunk in chunks:
        assert len(chunk) <= limit
        try:
            visible.append(html_text(chunk))
        except ApiError as e:
            raise AssertionError(f"{e.description}: {chunk!r}") from None
    assert " ".join(" ".join(v.split()) for v in visible) == " ".join(html_visible(text).split())
    assert all(w in " ".join(visible).split() for w in html_visible(text).split())  # no word cut



def test_command_line_refuses_to_start_without_its_secrets(monkeypatch, capsys):
    from bot.cli import main

    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert main(["telegram"]) == 2
    assert "TELEGRAM_BOT_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.delenv("TELEGRAM_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("CCHC_TELEGRAM_WEBHOOK_URL", "http://bot.example.gov.vn/telegram")
    assert main(["telegram", "--webhook"]) == 2
    err = capsys.readouterr().err
    assert "TELEGRAM_WEBHOOK_SECRET" in err and "webhook_url" in err
