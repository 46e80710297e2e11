"""The desk every channel calls: conversations per citizen, follow-up buttons, limits."""

from __future__ import annotations

import asyncio

from bot.service.desk import FOLLOW_UPS, Desk, RateLimit


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_is_a_sliding_window_per_user():
    clock = Clock()
    limit = RateLimit(3, 60, clock)
    assert [limit.wait("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.wait("a") == 60.0
    assert limit.wait("b") == 0.0  # another citizen is not held back
    clock.now += 30
    assert limit.wait("a") == 30.0
    clock.now += 30
    assert limit.wait("a") == 0.0
    assert RateLimit(0, 60, clock).wait("a") == 0.0  # 0 turns the limit off


def test_follow_up_buttons_ask_about_the_procedure_just_discussed(shipped):
    desk = Desk(shipped)
    first = desk.ask("test", "citizen-1", "làm giấy khai sinh cho con")
    assert first.answer.kind == "answer"
    assert desk.conversation("test", "citizen-1").last_entry == "dang-ky-khai-sinh"
    assert [label for label, _ in first.follow_ups] == [label for _, label, _ in FOLLOW_UPS]
    for (section, _, _), (_, question) in zip(FOLLOW_UPS, first.follow_ups, strict=True):
        reply = desk.ask("test", "citizen-1", question)
        assert reply.answer.entry_id == "dang-ky-khai-sinh", question
        assert [heading for heading, _ in reply.answer.parts] == [section], question
        assert all(label != section for label, _ in reply.follow_ups)
    # another citizen's follow-up has nothing to follow: it is not answered from citizen-1's procedure
    other = desk.ask("test", "citizen-2", "Lệ phí bao nhiêu?")
    assert other.answer.entry_id != "dang-ky-khai-sinh" or other.answer.kind != "answer"


def test_long_messages_are_read_from_their_beginning_with_a_note(shipped):
    desk = Desk(shipped, max_chars=200)
    reply = desk.ask("test", "u", "đăng ký khai sinh cho con " + "xin hỏi thêm " * 100)
    assert reply.notes and "200" in reply.notes[0]
    assert reply.answer.entry_id == "dang-ky-khai-sinh"
    assert len(reply.answer.question) <= 200


def test_rate_limited_citizens_get_a_polite_wait_and_nothing_is_answered(shipped):
    clock = Clock()
    desk = Desk(shipped, rate_count=2, rate_seconds=60, clock=clock)
    assert not desk.ask("test", "spam", "khai sinh").limited
    assert not desk.ask("test", "spam", "kết hôn").limited
    reply = desk.ask("test", "spam", "khai tử")
    assert reply.limited and reply.answer.kind == "limited" and not reply.answer.answered
    assert "60 giây" in reply.answer.parts[0][1]
    assert not desk.ask("test", "someone-else", "khai tử").limited


def test_async_channels_get_every_answer(shipped):
    desk = Desk(shipped)

    async def many():
        return await asyncio.gather(*(desk.aask("test", f"u{i}", q) for i, q in enumerate(
            ["làm hộ chiếu", "xin chào", "", "đổi bằng lái xe"])))

    replies = asyncio.run(many())
    desk.close()
    assert [r.answer.kind for r in replies] == ["answer", "greeting", "empty", "answer"]
    assert replies[0].answer.entry_id == "cap-ho-chieu"


def test_one_citizens_questions_are_answered_in_the_order_asked(shipped):
    """Sent at once, on several workers: a slow question, a follow-up about it and a quick greeting. They finish
    in the order asked (the order they were answered, not the order gather returns them), and the follow-up is
    answered about the procedure of the question before it."""
    desk = Desk(shipped, workers=4, rate_count=0)
    questions = ["làm hộ chiếu phổ thông cho người lần đầu cần những giấy tờ gì và nộp ở đâu", "Lệ phí bao nhiêu?",
                 "xin chào"]

    async def burst():
        finished: list[int] = []
        tasks = []
        for n, question in enumerate(questions):
            task = asyncio.ensure_future(desk.aask("test", "one-citizen", question))
            task.add_done_callback(lambda _, n=n: finished.append(n))
            tasks.append(task)
        replies = await asyncio.gather(*tasks)
        return finished, replies

    finished, replies = asyncio.run(burst())
    desk.close()
    assert finished == [0, 1, 2]
    assert replies[0].answer.entry_id == "cap-ho-chieu"
    assert replies[1].answer.entry_id == "cap-ho-chieu" and replies[1].answer.kind == "answer"
    assert replies[2].answer.kind == "greeting"
