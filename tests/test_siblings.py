"""Sibling procedures that tie: the bot asks which one is meant, on every channel, and the choice carries on.

The index is the small test knowledge base plus a sibling of its "Cấp thẻ căn cước" (tests/data/siblings), built
with the real encoder; Telegram, Zalo and the web run over real HTTP against their fakes."""

from __future__ import annotations

import asyncio

import pytest
from fake_zalo import FakeZalo

from bot.channels.render import to_json, to_text
from bot.channels.web import make_app
from bot.engine.answer import Conversation
from bot.engine.siblings import actions, are_siblings, stem, tied_siblings
from bot.engine.text import syllables
from bot.service.desk import Desk
from tests.conftest import DATA, write_config
from tests.test_telegram_channel import Polling, make_channel, run
from tests.test_web import LiveServer, call
from tests.test_zalo import answers, bot_for

TIED = "thẻ căn cước cần giấy tờ gì"
SIBLINGS = ["cap-the-can-cuoc", "cap-lai-the-can-cuoc"]


# --- pure: what siblings are ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [
    ("Cấp lại giấy phép lái xe", "Đổi giấy phép lái xe"),
    ("Cấp thẻ căn cước lần đầu (làm căn cước)", "Cấp đổi, cấp lại thẻ căn cước (đổi thẻ khi đủ tuổi)"),
    ("Cấp Giấy phép vận chuyển vật liệu nổ công nghiệp", "Cấp lại Giấy phép vận chuyển vật liệu nổ công nghiệp"),
    ("Gia hạn, sửa đổi, bổ sung Giấy chứng nhận đủ điều kiện huấn luyện", "Cấp Giấy chứng nhận đủ điều kiện huấn luyện"),
    ("Đăng ký khai tử tại cấp xã", "Đăng ký khai tử thực hiện tại cấp tỉnh"),
    ("Thủ tục điều chỉnh giấy phép xây dựng", "Cấp giấy phép xây dựng"),
])
def test_same_procedure_apart_from_action_or_level_are_siblings(a, b):
    assert are_siblings(a, b) and are_siblings(b, a)


@pytest.mark.parametrize("a, b", [
    ("Cấp giấy phép lái xe", "Cấp giấy phép xây dựng"),
    ("Đăng ký khai sinh", "Đăng ký khai tử"),
    ("Cấp lại giấy phép lái xe", "Cấp lại giấy phép lái xe"),  # the same title is one procedure, not two
])
def test_different_procedures_are_not_siblings(a, b):
    assert not are_siblings(a, b)


def test_an_imported_titles_parentheses_say_whom_it_is_for_and_keep_siblings_apart():
    a = "Cấp Giấy chứng nhận cơ sở đủ điều kiện sản xuất (đối với nhà đầu tư nước ngoài)"
    b = "Cấp lại Giấy chứng nhận cơ sở đủ điều kiện sản xuất"
    assert stem(a, glosses=False) != stem(b, glosses=False) and not are_siblings(a, b, False, False)
    assert are_siblings(a, "Cấp lại Giấy chứng nhận cơ sở đủ điều kiện sản xuất (đối với nhà đầu tư nước ngoài)",
                        False, False)


def test_actions_and_levels_of_a_title():
    assert actions("Cấp, cấp lại Giấy phép X") == {"cap", "cap lai"}
    assert actions("Cấp đổi, cấp lại thẻ căn cước") == {"doi", "cap lai"}
    assert actions("Đăng ký khai tử tại cấp xã") == {"xa"}
    assert actions("Cấp thẻ căn cước lần đầu") == {"cap"}


def _tie(question: str, ranked: list[tuple[str, float]]) -> list[str]:
    titles = {"a": ("Cấp giấy phép lái xe", True), "b": ("Cấp lại giấy phép lái xe", True),
              "c": ("Đổi giấy phép lái xe", True), "x": ("Cấp giấy phép xây dựng", True)}
    return tied_siblings(" ".join(syllables(question)), ranked, titles)


def test_a_tie_between_siblings_offers_them_best_first_and_a_clear_margin_does_not():
    assert _tie("giấy phép lái xe", [("a", 2.40), ("x", 2.39), ("b", 2.38), ("c", 2.30)]) == ["a", "b"]
    assert _tie("giấy phép lái xe", [("b", 2.40), ("c", 2.39), ("a", 2.39)]) == ["b", "c", "a"]
    assert _tie("giấy phép lái xe", [("a", 2.40), ("b", 2.30)]) == []  # the ranking is sure enough
    assert _tie("giấy phép lái xe", [("a", 2.40), ("x", 2.40)]) == []  # not siblings: no question back
    assert _tie("giấy phép lái xe", [("faq", 2.40), ("a", 2.40), ("b", 2.40)]) == []  # an FAQ found: no tie


def test_the_question_s_own_words_choose_the_sibling():
    assert _tie("cấp lại giấy phép lái xe bị mất", [("b", 2.40), ("a", 2.39)]) == []
    assert _tie("đổi giấy phép lái xe", [("c", 2.40), ("a", 2.39), ("b", 2.39)]) == []
    # the words name another sibling than the ranking's first: ask rather than answer the wrong one
    assert _tie("cấp lại giấy phép lái xe", [("a", 2.40), ("b", 2.39)]) == ["a", "b"]


# --- the engine over a real index -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def siblings(tmp_path_factory, e5_dir, encoder):
    """An assistant over the test knowledge base plus a sibling of its "Cấp thẻ căn cước"."""
    from bot.engine.assistant import Assistant
    from bot.engine.index import build_index
    from tests.conftest import FIXTURE_KB

    cfg = write_config(tmp_path_factory.mktemp("siblings"), [FIXTURE_KB, DATA / "siblings"], e5_dir=e5_dir)
    build_index(cfg, lambda: encoder, progress=False)
    return Assistant(cfg, encoder=encoder).load()


def test_a_question_that_fits_both_siblings_is_answered_with_a_question_back(siblings):
    answer = siblings.ask(TIED, Conversation())
    assert answer.kind == "clarify" and [s.id for s in answer.sources] == SIBLINGS
    data = to_json(answer)
    assert data["kind"] == "clarify" and data["declined"] is False
    assert [s["id"] for s in data["sources"]] == SIBLINGS
    text = to_text(answer)
    assert "1. Cấp thẻ căn cước" in text and "2. Cấp lại thẻ căn cước" in text  # numbered for the terminal


@pytest.mark.parametrize("question, entry", [
    ("cấp lại thẻ căn cước", "cap-lai-the-can-cuoc"),
    ("mất căn cước làm lại thế nào", "cap-lai-the-can-cuoc"),
    ("làm căn cước lần đầu", "cap-the-can-cuoc"),
    ("đăng ký khai sinh", "dang-ky-khai-sinh"),
])
def test_a_question_that_names_its_procedure_is_answered(siblings, question, entry):
    answer = siblings.ask(question, Conversation())
    assert answer.kind == "answer" and answer.entry_id == entry


def test_the_number_chosen_answers_the_question_about_that_sibling_and_becomes_the_subject(siblings):
    conversation = Conversation()
    assert siblings.ask(TIED, conversation).kind == "clarify"
    chosen = siblings.ask("2", conversation)
    assert chosen.kind == "answer" and chosen.entry_id == "cap-lai-the-can-cuoc"
    assert [h for h, _ in chosen.parts] == ["Thành phần hồ sơ"]  # what the first question asked
    fee = siblings.ask("còn lệ phí thì sao?", conversation)  # a follow-up is about the sibling chosen
    assert fee.entry_id == "cap-lai-the-can-cuoc" and "70.000" in fee.parts[0][1]


def test_a_new_question_instead_of_a_choice_is_answered_as_asked(siblings):
    conversation = Conversation()
    siblings.ask(TIED, conversation)
    answer = siblings.ask("đăng ký kết hôn", conversation)
    assert answer.entry_id == "dang-ky-ket-hon" and conversation.choices == []
    assert siblings.ask("2", conversation).entry_id != "cap-lai-the-can-cuoc"  # no choice is pending any more


# --- channels --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def desk(siblings):
    desk = Desk(siblings, rate_count=0)
    yield desk
    desk.close()


def test_the_desk_offers_one_button_per_sibling_and_the_button_chooses(desk):
    reply = desk.ask("web", "d-1", TIED)
    assert [label for label, _ in reply.follow_ups] == ["1. Cấp thẻ căn cước", "2. Cấp lại thẻ căn cước"]
    chosen = desk.ask("web", "d-1", reply.follow_ups[1][1])
    assert chosen.answer.entry_id == "cap-lai-the-can-cuoc" and chosen.answer.kind == "answer"
    assert "Lệ phí" in [label for label, _ in chosen.follow_ups]  # the sibling's own sections follow


@pytest.fixture(scope="module")
def loop():
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_telegram_shows_a_button_per_sibling_and_the_click_answers_the_chosen_one(loop, siblings):
    async def scenario():
        bot = await Polling(make_channel(siblings)).start()
        try:
            asked = (await bot.ask(2001, TIED))[-1]
            choices = [b for b in asked.buttons if b.get("callback_data", "").startswith(("q:", "t:"))]
            before = len(bot.fake.messages(2001))
            chosen = (await bot.reply(2001, before, bot.fake.click(2001, asked, choices[1]["callback_data"])))[-1]
            return asked, choices, chosen, bot.fake.problems
        finally:
            await bot.stop()

    asked, choices, chosen, problems = run(loop, scenario())
    assert "Bạn hỏi về thủ tục nào?" in asked.text
    assert [b["text"] for b in choices] == ["1. Cấp thẻ căn cước", "2. Cấp lại thẻ căn cước"]
    assert len(asked.buttons) >= 2 and all(len(b["callback_data"].encode()) <= 64 for b in choices)
    assert chosen.text.startswith("Cấp lại thẻ căn cước") and "Thành phần hồ sơ:" in chosen.text
    assert problems == []


def test_zalo_offers_the_siblings_as_quick_replies_numbered_in_the_text(desk, tmp_path):
    async def scenario():
        async with FakeZalo() as zalo, bot_for(zalo, desk, tmp_path) as (url, _):
            await zalo.deliver(url, zalo.text_event("z-1", TIED))
            sent = await answers(zalo, "z-1", 1)
            text = "\n".join(s.text for s in sent)
            assert "1. Cấp thẻ căn cước" in text and "2. Cấp lại thẻ căn cước" in text
            hidden = [b for b in sent[-1].buttons if b["type"] == "oa.query.hide"]
            assert [b["title"] for b in hidden] == ["1. Cấp thẻ căn cước", "2. Cấp lại thẻ căn cước"]
            await zalo.deliver(url, zalo.text_event("z-1", hidden[0]["payload"]))
            chosen = "\n".join(s.text for s in (await answers(zalo, "z-1", 2))[len(sent):])
            assert chosen.startswith("Cấp thẻ căn cước") and "Thành phần hồ sơ" in chosen
            assert zalo.refused == []

    asyncio.run(scenario())


def test_web_lists_the_siblings_as_sources_and_choice_buttons(desk, tmp_path):
    (tmp_path / "config.toml").write_text('[data]\ndir = "state"\n', encoding="utf-8")
    from bot.config import load_config

    with LiveServer(make_app(load_config(tmp_path / "config.toml", env={}), desk, env={})) as server:
        _, body, _ = call("POST", server.url + "/api/ask", json={"question": TIED, "user": "w-1"})
        assert isinstance(body, dict) and body["kind"] == "clarify" and body["declined"] is False
        assert [s["id"] for s in body["sources"]] == SIBLINGS
        assert [f["label"] for f in body["follow_ups"]] == ["1. Cấp thẻ căn cước", "2. Cấp lại thẻ căn cước"]
        _, chosen, _ = call("POST", server.url + "/api/ask",
                            json={"question": body["follow_ups"][0]["question"], "user": "w-1"})
        assert isinstance(chosen, dict) and chosen["kind"] == "answer" and chosen["sources"][0]["id"] == SIBLINGS[0]
