"""The Zalo OA channel over real HTTP against a local fake Zalo (signed webhooks, message and token APIs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat

import pytest
from aiohttp.test_utils import TestServer
from fake_zalo import FakeZalo, zalo_signature
from hypothesis import given
from hypothesis import strategies as st

from bot.channels.render import ZALO_LIMIT, split_text
from bot.channels.web import make_app
from bot.channels.zalo import WELCOME, TokenStore, reply_buttons, reply_messages, signature
from bot.config import load_config
from bot.engine.answer import Answer, Link
from bot.engine.phrases import NON_TEXT
from bot.service.desk import Desk, Reply


@pytest.fixture(scope="module")
def desk(shipped):
    desk = Desk(shipped, rate_count=0)
    yield desk
    desk.close()


@contextlib.asynccontextmanager
async def zalo_server(zalo: FakeZalo, desk: Desk, folder, **settings: str):
    """`python -m bot serve`'s app, configured from the environment the fake gives (plus `settings`, e.g.
    CCHC_ZALO_TIMEOUT="1"), on a real local port; yields the server and its config."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text('[data]\ndir = "state"\n', encoding="utf-8")
    env = {**zalo.env(), **settings}
    cfg = load_config(folder / "config.toml", env=env)
    server = TestServer(make_app(cfg, desk, env=env))
    await server.start_server()
    try:
        yield server, cfg
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def bot_for(zalo: FakeZalo, desk: Desk, folder):
    """The app on a real port; yields its webhook URL and config."""
    async with zalo_server(zalo, desk, folder) as (server, cfg):
        yield str(server.make_url("/zalo/webhook")), cfg


def to(zalo: FakeZalo, user: str) -> list:
    return [s for s in zalo.sent if s.user_id == user]


async def settle(zalo: FakeZalo, url: str) -> None:
    """Everything delivered before is answered: a marker question goes through the same one-at-a-time desk."""
    before = len(to(zalo, "marker"))
    status, _ = await zalo.deliver(url, zalo.text_event("marker", "xin chào"))
    assert status == 200
    async with zalo._changed:
        await asyncio.wait_for(zalo._changed.wait_for(lambda: len(to(zalo, "marker")) > before), 60)


async def answers(zalo: FakeZalo, user: str, count: int) -> list:
    """Wait until `count` answers reached the user (an answer's last message carries its buttons); all messages."""
    def done() -> bool:
        return sum(1 for s in to(zalo, user) if s.buttons) >= count

    async with zalo._changed:
        await asyncio.wait_for(zalo._changed.wait_for(done), 60)
    return to(zalo, user)


def test_signature_matches_zalos_definition():
    body = b'{"event_name":"user_send_text","timestamp":"1700000000000"}'
    assert signature("123", body, "1700000000000", "k") == zalo_signature("123", body, "1700000000000", "k")


def test_a_question_is_answered_with_sources_links_and_follow_up_buttons(desk, tmp_path):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as (url, _):
            status, body = await zalo.deliver(url, zalo.text_event("citizen-1", "le phi dang ky ket hon"))
            assert (status, json.loads(body)) == (200, {"status": "ok"})
            sent = await answers(zalo, "citizen-1", 1)
            assert zalo.refused == []
            text = "\n".join(s.text for s in sent)
            assert "Đăng ký kết hôn" in text and "lệ phí" in text and "Nguồn:" in text
            buttons = sent[-1].buttons
            kinds = [b["type"] for b in buttons]
            assert "oa.open.url" in kinds and "oa.query.hide" in kinds
            time_limit = next(b for b in buttons if b["type"] == "oa.query.hide" and b["title"] == "Thời hạn")

            # The citizen taps "Thời hạn": Zalo delivers the hidden payload as the citizen's text.
            status, _ = await zalo.deliver(url, zalo.text_event("citizen-1", time_limit["payload"]))
            assert status == 200
            follow_up = "\n".join(s.text for s in (await answers(zalo, "citizen-1", 2))[len(sent):])
            assert "Thời hạn" in follow_up and "Đăng ký kết hôn" in follow_up
            assert zalo.refused == []

    asyncio.run(scenario())


def test_answers_are_replies_to_the_citizens_message_not_proactive_messages(desk, tmp_path):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as (url, _):
            event = zalo.text_event("citizen-q", "làm thẻ căn cước cần giấy tờ gì", msg_id="citizen-msg-1")
            assert (await zalo.deliver(url, event))[0] == 200
            sent = await answers(zalo, "citizen-q", 1)
            assert (await zalo.deliver(url, zalo.attachment_event("citizen-q", "sticker")))[0] == 200
            await settle(zalo, url)
            sent = to(zalo, "citizen-q")
            assert len(sent) >= 2 and NON_TEXT in [s.text for s in sent]
            # Zalo counted every message as a reply (free), none as a proactive (billed) one.
            assert [s.quota_type for s in sent] == ["reply"] * len(sent) and zalo.quota("proactive", "citizen-q") == []
            assert {s.reply_to for s in sent if s.text != NON_TEXT} == {"citizen-msg-1"}
            # A welcome to a new follower names no message of theirs: Zalo counts it as proactive.
            assert (await zalo.deliver(url, zalo.follow_event("follower-q")))[0] == 200
            await settle(zalo, url)
            assert [s.quota_type for s in to(zalo, "follower-q")] == ["proactive"]
            assert zalo.refused == []

    asyncio.run(scenario())


def test_the_fake_counts_a_message_without_message_id_as_proactive(tmp_path):
    """The fake's quota rules, against a client that sends the old way (only `recipient.user_id`)."""
    import aiohttp

    async def scenario():
        async with FakeZalo() as zalo, aiohttp.ClientSession() as http:
            zalo._interaction(zalo.text_event("old-way", "xin chào", msg_id="m-1"))
            headers = {"access_token": zalo.access_token}
            for recipient in ({"user_id": "old-way"}, {"message_id": "m-1"}, {"message_id": "never-sent"}):
                async with http.post(f"{zalo.url}/v3.0/oa/message/cs", headers=headers,
                                     json={"recipient": recipient, "message": {"text": "Trả lời"}}) as r:
                    assert r.status == 200
            assert [s.quota_type for s in zalo.sent] == ["proactive", "reply"]
            assert [r["error"] for r in zalo.refused] == [-201]  # a reply must name a message the citizen sent
            for _ in range(8):  # 8 replies to one message are free; the 9th is proactive
                async with http.post(f"{zalo.url}/v3.0/oa/message/cs", headers=headers,
                                     json={"recipient": {"message_id": "m-1"}, "message": {"text": "Nữa"}}) as r:
                    quota = (await r.json())["data"]["quota"]["quota_type"]
            assert quota == "sub_quota" and [s.quota_type for s in zalo.sent].count("reply") == 8

    asyncio.run(scenario())


def test_a_duplicate_delivery_is_answered_once(desk, tmp_path):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as (url, _):
            event = zalo.text_event("citizen-2", "lệ phí đăng ký kết hôn", msg_id="retry-me")
            first = await zalo.deliver(url, event)
            again = await zalo.deliver(url, event)  # Zalo retries with the same msg_id and body
            assert first[0] == again[0] == 200 and json.loads(again[1]) == {"status": "duplicate"}
            await settle(zalo, url)
            sent = to(zalo, "citizen-2")
            assert sum(1 for s in sent if s.buttons) == 1 and sent[-1].buttons
            assert "kết hôn" in sent[0].text.lower()

    asyncio.run(scenario())


def test_forged_and_missing_signatures_are_rejected_and_not_processed(desk, tmp_path):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as (url, cfg):
            event = zalo.text_event("forger", "lệ phí khai sinh")
            raw = json.dumps(event, ensure_ascii=False).encode()
            wrong_key = zalo_signature(zalo.app_id, raw, event["timestamp"], "guessed-secret")
            assert (await zalo.deliver(url, event, signature=wrong_key))[0] == 401
            assert (await zalo.deliver(url, event, signature=""))[0] == 401  # no header at all
            tampered = raw.replace("lệ phí".encode(), b"le phi")  # signed body, changed in transit
            assert (await zalo.deliver(url, event, signature=zalo_signature(
                zalo.app_id, raw, event["timestamp"], zalo.oa_secret_key), body=tampered))[0] == 401
            old = str(int(event["timestamp"]) - (cfg.zalo.answer_max_age + 60) * 1000)
            forged_old = zalo.text_event("forger", "lệ phí khai sinh", timestamp=old)  # old, and signed wrongly
            assert (await zalo.deliver(url, forged_old, signature=wrong_key))[0] == 401
            assert (await zalo.deliver(url, {}, body=b"{not json", signature="mac=00"))[0] == 400
            await settle(zalo, url)
            assert to(zalo, "forger") == []
            # A rejected call does not poison deduplication: the genuine event is still answered.
            assert (await zalo.deliver(url, event))[0] == 200
            await settle(zalo, url)
            assert to(zalo, "forger")

    asyncio.run(scenario())


def test_a_stale_genuine_event_is_acknowledged_logged_for_staff_and_not_answered(shipped, tmp_path):
    """After an outage Zalo delivers old events again for hours, and disables a webhook that keeps refusing them:
    a correctly signed event older than [zalo] answer_max_age gets 200, is not answered, and staff find it in the
    question log (kind "late"); delivered again, it is a duplicate."""
    from bot.service.qlog import QuestionLog

    log = QuestionLog(tmp_path / "questions.db", b"test-key")
    desk = Desk(shipped, log=log, rate_count=0)

    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path / "site") as (url, cfg):
            old = str(int(zalo._stamp()) - (cfg.zalo.answer_max_age + 600) * 1000)
            stale = zalo.text_event("late-citizen", "lệ phí cấp hộ chiếu 0912345678", timestamp=old)
            status, body = await zalo.deliver(url, stale)
            assert (status, json.loads(body)) == (200, {"status": "late"})
            status, body = await zalo.deliver(url, stale)  # Zalo's next retry of the same event
            assert (status, json.loads(body)) == (200, {"status": "duplicate"})
            fresh = zalo.text_event("late-citizen", "xin chào")
            assert (await zalo.deliver(url, fresh))[0] == 200
            async with zalo._changed:  # the stale event made no task: nothing of it can arrive after the greeting
                await asyncio.wait_for(zalo._changed.wait_for(lambda: to(zalo, "late-citizen")), 60)
            return [s.text for s in to(zalo, "late-citizen")]

    texts = asyncio.run(scenario())
    desk.close()  # finishes the side thread's writes
    assert len(texts) == 1 and "hộ chiếu" not in texts[0].lower()  # only the greeting
    log = QuestionLog(tmp_path / "questions.db", b"test-key")
    [late] = [r for r in log.questions() if r["kind"] == "late"]
    assert late["question"] == "lệ phí cấp hộ chiếu [số điện thoại]" and late["channel"] == "zalo"
    assert late["user_key"] == log.user_key("zalo", "late-citizen") and late["declined"] == 1
    log.close()


def test_deduplication_survives_a_restart(desk, tmp_path):
    async def scenario():
        async with FakeZalo() as zalo:
            event = zalo.text_event("citizen-r", "lệ phí đăng ký kết hôn", msg_id="before-restart")
            async with bot_for(zalo, desk, tmp_path) as (url, _):
                assert (await zalo.deliver(url, event))[0] == 200
                await answers(zalo, "citizen-r", 1)
            before = len(to(zalo, "citizen-r"))
            async with bot_for(zalo, desk, tmp_path) as (url, _):  # restarted; Zalo retries the same event
                status, body = await zalo.deliver(url, event)
                assert (status, json.loads(body)) == (200, {"status": "duplicate"})
                await settle(zalo, url)
            assert len(to(zalo, "citizen-r")) == before

    asyncio.run(scenario())


def test_an_expired_token_is_refreshed_stored_privately_and_survives_a_restart(desk, tmp_path):
    async def scenario():
        async with FakeZalo() as zalo:
            async with bot_for(zalo, desk, tmp_path) as (url, cfg):
                zalo.expire_token()
                assert (await zalo.deliver(url, zalo.text_event("citizen-3", "thời hạn cấp hộ chiếu")))[0] == 200
                sent = await answers(zalo, "citizen-3", 1)
                assert zalo.refreshes == 1 and sent[0].token == "access-1"
                assert [r["error"] for r in zalo.refused] == [-216]
                path = cfg.data_dir / "zalo-tokens.json"
                assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
                stored = json.loads(path.read_text())
                assert (stored["access_token"], stored["refresh_token"]) == ("access-1", "refresh-1")
                assert [p.name for p in path.parent.iterdir() if p.name.startswith(".zalo-tokens-")] == []
            # Restarted with the same (now stale) environment: the stored pair is used, no refresh needed.
            async with bot_for(zalo, desk, tmp_path) as (url, _):
                assert (await zalo.deliver(url, zalo.text_event("citizen-3", "xin chào")))[0] == 200
                sent = await answers(zalo, "citizen-3", 2)
                assert sent[-1].token == "access-1" and zalo.refreshes == 1
                assert len(zalo.refused) == 1

    asyncio.run(scenario())


def test_a_new_pair_in_the_environment_wins_over_the_stored_one(tmp_path):
    path = tmp_path / "zalo-tokens.json"
    TokenStore(path, "a0", "r0").save("a1", "r1")
    assert (TokenStore(path, "a0", "r0").access_token, TokenStore(path, "a0", "r0").refresh_token) == ("a1", "r1")
    assert TokenStore(path, "b0", "s0").access_token == "b0"  # the admin authorised the app again


def test_follow_attachments_and_api_errors(desk, tmp_path):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as (url, _):
            assert (await zalo.deliver(url, zalo.follow_event("newcomer")))[0] == 200
            for kind in ("image", "sticker", "file"):
                assert (await zalo.deliver(url, zalo.attachment_event("sender", kind)))[0] == 200
            await settle(zalo, url)
            assert [s.text for s in to(zalo, "newcomer")] == [WELCOME]
            assert [s.text for s in to(zalo, "sender")] == [NON_TEXT] * 3
            # The OA API refuses the answer (quota): the citizen still gets an apology, nothing crashes.
            zalo.fail_next(-32, "Quota exceeded")
            assert (await zalo.deliver(url, zalo.text_event("unlucky", "lệ phí khai sinh")))[0] == 200
            await settle(zalo, url)
            assert [r["error"] for r in zalo.refused] == [-32]
            assert to(zalo, "unlucky") and "sự cố" in to(zalo, "unlucky")[-1].text

    asyncio.run(scenario())


@given(st.text(alphabet=st.sampled_from("ab cđ\n\nế"), max_size=6000))
def test_split_text_keeps_every_word_within_the_limit(text):
    pieces = split_text(text, ZALO_LIMIT)
    assert all(0 < len(p) <= ZALO_LIMIT for p in pieces)
    assert "".join(pieces).split() == text.split() or "".join("".join(pieces).split()) == "".join(text.split())


def test_a_long_answer_is_split_and_buttons_stay_within_zalos_limits():
    parts = [(f"Phần {i}", "Nội dung rất dài. " * 120) for i in range(4)]
    answer = Answer("q", "answer", title="Thủ tục", parts=parts,
                    links=[Link("Cổng Dịch vụ công quốc gia", "https://dichvucong.gov.vn"),
                           Link("Cổng tỉnh", "https://dichvucong.example.gov.vn"), Link("Sai", "javascript:x")])
    reply = Reply(answer, follow_ups=[(f"Nút {i}", f"Câu hỏi {i}?") for i in range(5)])
    messages = reply_messages(reply)
    assert len(messages) > 1 and all(len(m["text"]) <= 2000 for m in messages)
    assert all("attachment" not in m for m in messages[:-1])
    buttons = messages[-1]["attachment"]["payload"]["buttons"]
    assert len(buttons) == 5 and [b["type"] for b in buttons] == ["oa.open.url"] + ["oa.query.hide"] * 4
    assert buttons[1] == {"title": "Nút 0", "type": "oa.query.hide", "payload": "#Câu hỏi 0?"}
    declined = Reply(Answer("q", "decline", parts=[("", "Xin lỗi")], suggestions=["Đăng ký khai sinh"],
                            links=answer.links), follow_ups=[("👤 Gặp cán bộ", "Tôi muốn gặp cán bộ")])
    buttons = reply_buttons(declined)
    assert [b["title"] for b in buttons] == ["Cổng Dịch vụ công quốc gia", "Cổng tỉnh", "Đăng ký khai sinh",
                                             "👤 Gặp cán bộ"]


def test_a_staff_reply_reaches_the_citizen_who_asked_for_a_person_on_zalo(shipped, tmp_path):
    from bot.service.handoff import Handoff
    from bot.service.qlog import QuestionLog

    log = QuestionLog(tmp_path / "questions.db", b"test-key")
    handoff = Handoff(log)
    desk = Desk(shipped, log=log, handoff=handoff, rate_count=0)

    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path / "site") as (url, _):
            status, _ = await zalo.deliver(url, zalo.text_event("citizen-h", "tôi muốn gặp cán bộ"))
            assert status == 200
            await settle(zalo, url)
            told = "\n".join(s.text for s in to(zalo, "citizen-h"))
            [ticket] = await asyncio.to_thread(handoff.pending_tickets)
            assert ticket.channel == "zalo" and str(ticket.id) in told  # the citizen was told the ticket's number
            # the staff chat (Telegram, another process in production) announced it and a staff member answered
            await asyncio.to_thread(handoff.mark_notified, ticket.id, "staff-1")
            await asyncio.to_thread(handoff.staff_reply, "staff-1", "Chào bạn, hồ sơ của bạn do UBND xã giải quyết.")
            async with zalo._changed:
                await asyncio.wait_for(zalo._changed.wait_for(
                    lambda: any("UBND xã giải quyết" in s.text for s in to(zalo, "citizen-h"))), 30)
            assert await asyncio.to_thread(handoff.pending_replies, "zalo") == []
            assert zalo.refused == []
            # The staff reply answers the citizen's own message: Zalo counts it as a reply, not a proactive message.
            assert [s.quota_type for s in to(zalo, "citizen-h")] == ["reply"] * len(to(zalo, "citizen-h"))

    asyncio.run(scenario())
    desk.close()


def test_thumbs_on_zalo_come_as_quick_replies_and_count_only_from_the_asker(shipped, tmp_path):
    from bot.channels.zalo import FEEDBACK_ASK, FEEDBACK_THANKS, FEEDBACK_UNKNOWN
    from bot.service.handoff import BUTTON as HANDOFF_BUTTON
    from bot.service.handoff import Handoff
    from bot.service.qlog import QuestionLog

    log = QuestionLog(tmp_path / "questions.db", b"test-key")
    desk = Desk(shipped, log=log, handoff=Handoff(log), rate_count=0)

    async def reply_to(zalo, url, user, text):
        before = len(to(zalo, user))
        assert (await zalo.deliver(url, zalo.text_event(user, text)))[0] == 200
        async with zalo._changed:
            await asyncio.wait_for(zalo._changed.wait_for(lambda: len(to(zalo, user)) > before), 60)
        return to(zalo, user)[before:]

    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path / "site") as (url, _):
            assert (await zalo.deliver(url, zalo.text_event("asker", "lệ phí đăng ký kết hôn")))[0] == 200
            async with zalo._changed:
                await asyncio.wait_for(zalo._changed.wait_for(
                    lambda: any(s.text == FEEDBACK_ASK for s in to(zalo, "asker"))), 60)
            ask = to(zalo, "asker")[-1]
            assert ask.text == FEEDBACK_ASK and [b["title"] for b in ask.buttons] == ["👍 Hữu ích", "👎 Chưa đúng"]
            down = ask.buttons[1]["payload"]
            question_id = int(down.split()[1])
            [stranger] = await reply_to(zalo, url, "stranger", down)  # someone else sends the same payload
            assert stranger.text == FEEDBACK_UNKNOWN and log.question(question_id)["feedback"] is None
            [thanks] = await reply_to(zalo, url, "asker", down)  # the asker taps 👎
            assert thanks.text == FEEDBACK_THANKS and [b["title"] for b in thanks.buttons] == [HANDOFF_BUTTON[0]]
            assert log.question(question_id)["feedback"] == -1
            [typed] = await reply_to(zalo, url, "asker", "#tot")  # typed: rates the asker's last answer
            assert typed.text == FEEDBACK_THANKS and log.question(question_id)["feedback"] == 1
            assert {s.quota_type for s in zalo.sent} == {"reply"} and zalo.refused == []

    asyncio.run(scenario())
    desk.close()
