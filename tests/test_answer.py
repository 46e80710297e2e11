"""Answers: the part asked for first, citations, declines, greetings, follow-ups, bad input."""

import pytest

from bot.channels.render import to_json, to_text
from bot.engine.answer import Conversation, truncate
from bot.engine.assistant import Assistant
from bot.engine.knowledge import CAN_CU, HO_SO, NOI_NOP, PHI, THOI_HAN, TRINH_TU, TRUC_TUYEN
from bot.engine.question import detect_aspects


@pytest.mark.parametrize("question, aspects", [
    ("Đăng ký kết hôn cần những giấy tờ gì?", [HO_SO]),
    ("dang ky ket hon co mat phi khong", [PHI]),
    ("làm căn cước mất bao lâu", [THOI_HAN]),
    ("dang ky khai sinh o dau", [NOI_NOP]),
    ("nộp hồ sơ online ở đâu", [TRUC_TUYEN]),
    ("căn cứ pháp lý của thủ tục này", [CAN_CU]),
    ("thủ tục khai tử gồm những bước nào", [TRINH_TU]),
    ("làm lần đầu", []),  # "đầu" alone is not "ở đâu"
    ("Đăng ký khai sinh", []),
])
def test_detect_aspects(question, aspects):
    assert detect_aspects(question) == aspects


def test_truncate_cuts_at_whole_lines():
    text = "dòng một\ndòng hai dài hơn một chút\ndòng ba"
    assert truncate(text, 100) == text
    assert truncate(text, 30) == "dòng một …"


@pytest.fixture
def assistant(small_index, encoder):
    return Assistant(small_index, encoder=encoder).load()


def test_aspect_question_gets_that_section_first_with_citation(assistant):
    answer = assistant.ask("Đăng ký kết hôn cần những giấy tờ gì?")
    assert answer.kind == "answer" and not answer.declined
    assert answer.title == "Đăng ký kết hôn"
    assert answer.parts[0] == (HO_SO, "- Tờ khai đăng ký kết hôn.\n- Giấy tờ tùy thân của hai bên.")
    assert answer.sources[0].id == "dang-ky-ket-hon"
    assert answer.sources[0].topics == ["dang-ky-ket-hon", "1.000894"]
    assert answer.sources[0].url.startswith("https://dichvucong.gov.vn/")
    assert answer.links[0].url == "https://dichvucong.gov.vn/fixture-ket-hon"  # the procedure's own online link
    text = to_text(answer)
    assert text.index("Tờ khai đăng ký kết hôn") < text.index("Nguồn:")
    assert "(kiểm tra ngày 01/11/2026)" in text


def test_general_question_gets_a_short_card(assistant):
    answer = assistant.ask("dang ky khai sinh")
    headings = [h for h, _ in answer.parts]
    assert headings == ["", HO_SO, THOI_HAN, PHI, NOI_NOP]
    assert "60 ngày" in answer.parts[0][1]


def test_diacritic_less_and_abbreviated_questions(assistant):
    assert assistant.ask("lam giay khai sinh cho con can gi").sources[0].id == "dang-ky-khai-sinh"
    assert assistant.ask("lam CCCD o dau").sources[0].id == "cap-the-can-cuoc"
    answer = assistant.ask("CMND 9 so con dung duoc khong")
    assert {"hoi-dap-cmnd-9-so", "cap-the-can-cuoc"} <= {s.id for s in answer.sources}


def test_faq_answer_cites_what_it_is_about(assistant):
    answer = assistant.ask("Quá 60 ngày mới khai sinh cho con thì có bị phạt không?")
    assert answer.sources[0].id == "hoi-dap-khai-sinh-qua-han"
    assert answer.sources[1].id == "dang-ky-khai-sinh"
    assert "không còn được miễn lệ phí" in answer.parts[0][1]


def test_plan_is_shown_with_its_year(assistant):
    answer = assistant.ask("Kế hoạch 99/KH-UBND tuyên truyền cải cách hành chính")
    assert answer.sources[0].id == "ke-hoach-thu-nghiem-2023"
    assert answer.title.endswith("(ban hành năm 2023)")


@pytest.mark.parametrize("question", ["Cách nấu canh chua cá lóc", "Giá vàng hôm nay bao nhiêu?",
                                      "Đội tuyển Việt Nam đá với ai tối nay?"])
def test_out_of_domain_is_declined_with_hotline_and_portal(assistant, question):
    answer = assistant.ask(question)
    assert answer.declined and answer.kind == "decline"
    assert answer.sources == []
    assert "18001096" in answer.parts[0][1]
    assert any(link.url == "https://dichvucong.gov.vn" for link in answer.links)


def test_greetings_and_thanks_get_a_short_reply(assistant):
    assert assistant.ask("Xin chào").kind == "greeting"
    assert assistant.ask("chao ban").kind == "greeting"
    assert assistant.ask("cảm ơn nhiều nhé").kind == "thanks"
    assert assistant.ask("Xin chào, cho hỏi làm khai sinh ở đâu").kind == "answer"


def test_follow_up_keeps_the_procedure_being_discussed(assistant):
    conversation = Conversation()
    first = assistant.ask("Đăng ký khai sinh ở đâu?", conversation)
    assert first.parts[0][0] == NOI_NOP
    second = assistant.ask("còn lệ phí thì sao?", conversation)
    assert second.entry_id == "dang-ky-khai-sinh"
    assert second.parts[0] == (PHI, "Đăng ký khai sinh đúng hạn được miễn lệ phí.")
    third = assistant.ask("thế kết hôn cần giấy tờ gì", conversation)
    assert third.entry_id == "dang-ky-ket-hon"
    # a new subject the base does not know is not answered from the procedure last discussed
    assert assistant.ask("mua vé xem bóng đá ở đâu", conversation).declined


@pytest.mark.parametrize("question", [
    "",
    "   \n\t ",
    "😀🙏🎉",
    "<script>alert('x')</script><b>đăng ký khai sinh</b>",
    "\x00\x01\x1b[31mkhai sinh\x7f",
    "khai sinh " * 1000,  # 10,000 characters
    "???!!!...",
    "\u202e\u200b\ufeff",
])
def test_bad_input_is_answered_without_a_crash(assistant, question):
    answer = assistant.ask(question)
    assert answer.kind in {"answer", "decline", "empty"}
    payload = to_json(answer)
    assert isinstance(payload["answer"], str) and payload["answer"]
    assert len(payload["question"]) <= 1000
    assert "<script>" not in payload["answer"]


def test_entry_ids_in_text_are_shown_as_titles():
    from bot.engine.answer import name_entries
    from bot.engine.index import Record

    entries = {"dang-ky-khai-sinh": Record("dang-ky-khai-sinh", "procedure", "", {"tieu_de": "Đăng ký khai sinh"}, "", ())}
    assert name_entries("Xem mục dang-ky-khai-sinh, mã 1.001193, trang https://x.vn/a-b-c.", entries) == \
        "Xem mục “Đăng ký khai sinh”, mã 1.001193, trang https://x.vn/a-b-c."


def test_plan_known_only_by_its_year_is_cited_with_the_year(kb_copy):
    from bot.channels.render import cite
    from bot.engine.answer import Source
    from bot.engine.knowledge import load_knowledge

    path = kb_copy / "ke-hoach/ke-hoach-thu-nghiem-2023.md"
    path.write_text(path.read_text(encoding="utf-8").replace("ngay_ban_hanh: 2023-02-01", 'ngay_ban_hanh: "2023"'),
                    encoding="utf-8")
    kb = load_knowledge([kb_copy])
    assert not kb.errors and kb.entries["ke-hoach-thu-nghiem-2023"].date == "2023"
    assert cite(Source("x", "Kế hoạch", "plan", "2023", "", 1.0, [])) == "Kế hoạch (ban hành năm 2023)"
    assert cite(Source("x", "Kế hoạch", "plan", "2023-02-01", "", 1.0, [])) == "Kế hoạch (ban hành ngày 01/02/2023)"


def test_aspect_the_faq_does_not_answer_comes_from_its_procedure(assistant):
    answer = assistant.ask("khai sinh quá hạn 60 ngày thì nộp ở đâu?")
    assert answer.entry_id == "dang-ky-khai-sinh"
    assert answer.parts[0][0] == NOI_NOP
    ids = [s.id for s in answer.sources]
    assert ids[0] == "dang-ky-khai-sinh" and "hoi-dap-khai-sinh-qua-han" in ids and len(ids) == len(set(ids))


@pytest.mark.parametrize("question, top", [
    ("đăng ký khai sinh", "dang-ky-khai-sinh"),  # names no FAQ's own point: the procedure card
    ("làm giấy khai sinh cho con", "dang-ky-khai-sinh"),
    ("ông bà đi khai sinh cho cháu được không", "hoi-dap-khai-sinh-ong-ba-di-lam-thay"),  # the FAQ's point
])
def test_a_general_question_gets_the_procedure_not_a_special_case_faq(shipped, question, top):
    answer = shipped.ask(question)
    assert answer.entry_id == top
    assert [s.id for s in answer.sources][:1] == [top]


def test_a_fee_reduction_is_answered_with_the_date_it_applies_until(shipped):
    answer = shipped.ask("lệ phí cấp đổi thẻ căn cước bao nhiêu")
    text = to_text(answer)
    assert answer.entry_id == "cap-doi-cap-lai-the-can-cuoc" and "25.000 đồng" in text
    assert "áp dụng đến hết 31/12/2026" in text and "den_het" not in text
