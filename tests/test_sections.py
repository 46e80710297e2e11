"""Section-level answers for plans, topics and long guides: the section the question asks about, under its heading."""

from __future__ import annotations

import pytest

from bot.config import ROOT
from bot.engine.answer import OVERVIEW_HEADING, Conversation
from bot.engine.knowledge import load_knowledge
from bot.engine.question import analyse
from bot.engine.sections import asked_section, choose_sections, focus_subsection, framing, offered, short_label

HN_2023 = "ke-hoach-37-kh-ubnd-2023-ha-noi"
HN_2021 = "ke-hoach-105-kh-ubnd-2021-ha-noi"
HOAI_DUC = "ke-hoach-65-kh-ubnd-2019-hoai-duc"
LONG_BIEN = "huong-dan-95-hd-btgqu-long-bien"
TANH_LINH = "ke-hoach-tuyen-truyen-cchc-2025-tanh-linh"
# The questions of issue 19, each with the section that answers it.
ISSUE = [
    ("Kế hoạch 37 của Hà Nội năm 2023 dùng những hình thức tuyên truyền nào?", HN_2023, "Hình thức tuyên truyền"),
    ("Chủ đề tuyên truyền CCHC năm 2025 của Tánh Linh là gì?", TANH_LINH, "Chủ đề tuyên truyền"),
    ("Tánh Linh 2025 tuyên truyền qua những hình thức nào?", TANH_LINH, "Hình thức tuyên truyền"),
    ("Hoài Đức 2019 tuyên truyền những nội dung gì về cải cách hành chính?", HOAI_DUC, "Nội dung tuyên truyền"),
    ("Hướng dẫn 95-HD/BTGQU của Long Biên tuyên truyền những nội dung nào?", LONG_BIEN, "Nội dung tuyên truyền"),
]


@pytest.fixture(scope="module")
def kb():
    base = load_knowledge([ROOT / "knowledge"])
    assert not base.errors
    return base.entries


@pytest.mark.parametrize("question, entry, heading", ISSUE + [
    ("tanh linh 2025 tuyen truyen qua nhung hinh thuc nao", TANH_LINH, "Hình thức tuyên truyền"),  # no diacritics
    ("hoai duc 2019 tuyen truyen nhung noi dung gi", HOAI_DUC, "Nội dung tuyên truyền"),
    ("Hà Nội 2023 tuyên truyền cải cách hành chính trên đài phát thanh, truyền hình ra sao?", HN_2023,
     "Hình thức tuyên truyền"),  # words of the section's text, not of its heading
    ("Ai chịu trách nhiệm thực hiện kế hoạch tuyên truyền CCHC năm 2023 của Hà Nội?", HN_2023, "Tổ chức thực hiện"),
    # the plan has no such section: its notes say the source did not give it
    ("Kế hoạch 105 của Hà Nội năm 2021 dùng hình thức tuyên truyền nào?", HN_2021, "Lưu ý"),
    ("Mục tiêu của cải cách hành chính nhà nước là gì?", "cai-cach-hanh-chinh", "Mục tiêu"),  # not "Là gì"
    ("Chỉ số PAPI là gì?", "chi-so-papi", "Là gì"),
])
def test_the_section_the_question_asks_about_comes_first(kb, question, entry, heading):
    choice = choose_sections(kb[entry], analyse(question))
    assert choice.headings[0] == heading


def test_two_sections_asked_about_are_both_chosen_in_the_documents_order(kb):
    choice = choose_sections(kb[TANH_LINH], analyse("Chủ đề và hình thức tuyên truyền của Tánh Linh năm 2025"))
    assert choice.headings == ("Chủ đề tuyên truyền", "Hình thức tuyên truyền")
    one = choose_sections(kb[TANH_LINH], analyse("Tánh Linh 2025 tuyên truyền qua những hình thức nào?"))
    assert one.headings == ("Hình thức tuyên truyền",)


@pytest.mark.parametrize("question, entry", [
    ("Kế hoạch 37 nói gì?", HN_2023),
    ("Kế hoạch 65/KH-UBND năm 2019 của Hoài Đức gồm những phần nào?", HOAI_DUC),
    ("Kế hoạch 65/KH-UBND năm 2019 của Hoài Đức", HOAI_DUC),  # names the plan only
])
def test_a_question_about_the_whole_document_chooses_no_one_section(kb, question, entry):
    assert choose_sections(kb[entry], analyse(question)).whole


def test_retrieval_scores_break_ties_between_sections_the_words_do_not_tell_apart(kb):
    entry = kb[HN_2023]
    question = analyse("Hà Nội 2023 tuyên truyền về cơ quan, đơn vị thế nào")  # words of two sections alike
    scores = {s.heading: s.evidence for s in choose_sections(entry, question).scores}
    assert scores["Mục đích"] == pytest.approx(scores["Tổ chức thực hiện"])
    near = {"Mục đích": 0.84, "Yêu cầu": 0.83, "Hình thức tuyên truyền": 0.82, "Tổ chức thực hiện": 0.86}
    assert choose_sections(entry, question, near).headings == ("Tổ chức thực hiện",)
    near["Mục đích"] = 0.88
    assert choose_sections(entry, question, near).headings == ("Mục đích",)


def test_the_framing_is_one_or_two_lines_with_issuer_date_and_the_plans_own_words_on_being_current(kb):
    text = framing(kb[HN_2023])
    assert text.startswith("Do Ủy ban nhân dân thành phố Hà Nội ban hành ngày 01/02/2023.")
    assert "không phải kế hoạch hiện hành" in text and "tóm tắt" not in text
    assert len(text) <= 260
    assert "ban hành năm 2025" in framing(kb[TANH_LINH])  # a plan known by its year only


def test_a_long_section_is_cut_to_the_sub_part_asked_about_and_names_the_others(kb):
    text = kb[HN_2021].section("Nội dung tuyên truyền").text
    shown = focus_subsection(text, analyse("Hà Nội 2021 tuyên truyền gì về chính quyền số?"), 900)
    assert shown.startswith("**Chính quyền điện tử, chính quyền số**")
    assert "Phần này còn nói về: Chỉ đạo, điều hành và thể chế;" in shown
    assert len(shown) <= 900


def test_follow_ups_name_the_other_sections_by_short_labels(kb):
    assert short_label("Hình thức tuyên truyền", kb[HN_2023].title) == "Hình thức"
    assert short_label("Tổ chức thực hiện", kb[HN_2023].title) == "Tổ chức thực hiện"
    assert offered(kb[HN_2023], ["Hình thức tuyên truyền"]) == [
        ("Mục đích", "Mục đích"), ("Yêu cầu", "Yêu cầu"), ("Tổ chức thực hiện", "Tổ chức thực hiện"),
        ("Lưu ý", "Lưu ý")]


@pytest.mark.parametrize("question, asks", [
    ("còn tổ chức thực hiện thì sao?", True),
    ("Hình thức tuyên truyền", True),
    ("Mục đích", True),
    ("thế kết hôn cần giấy tờ gì", False),
    ("kế hoạch 105 của Hà Nội nói gì", False),
    ("còn thì sao", False),
])
def test_a_follow_up_that_names_only_a_part_of_the_document_is_about_it(kb, question, asks):
    assert asked_section(kb[HN_2023], analyse(question)) is asks


# --- through the assistant, over the shipped knowledge base and the real model ---

@pytest.mark.parametrize("question, entry, heading", ISSUE)
def test_issue_questions_show_the_section_under_its_heading_after_a_short_framing(shipped, question, entry, heading):
    answer = shipped.ask(question)
    assert answer.entry_id == entry and answer.kind == "answer"
    assert answer.parts[0][0] == "" and len(answer.parts[0][1]) <= 260  # the framing: one or two lines
    assert answer.parts[1][0] == heading
    assert heading not in [label for _, label in answer.offered]


def test_a_whole_document_question_gets_an_overview_naming_its_sections(shipped):
    answer = shipped.ask("kế hoạch 37 nói gì")
    assert answer.entry_id == HN_2023
    assert [h for h, _ in answer.parts] == ["", OVERVIEW_HEADING]
    for heading in ("Mục đích", "Yêu cầu", "Hình thức tuyên truyền", "Tổ chức thực hiện", "Lưu ý"):
        assert f"**{heading}**" in answer.parts[1][1]


def test_a_follow_up_after_a_plan_answer_shows_another_section_of_the_same_plan(shipped):
    conversation = Conversation()
    first = shipped.ask("Tánh Linh 2025 tuyên truyền qua những hình thức nào?", conversation)
    assert first.parts[1][0] == "Hình thức tuyên truyền"
    assert ("Chủ đề", "Chủ đề tuyên truyền") in first.offered
    second = shipped.ask("Chủ đề tuyên truyền", conversation)  # what the "Chủ đề" button asks
    assert second.entry_id == TANH_LINH and second.parts[1][0] == "Chủ đề tuyên truyền"
    third = shipped.ask("thế đăng ký kết hôn cần giấy tờ gì", conversation)  # a new subject leaves the plan
    assert third.entry_id == "dang-ky-ket-hon"


def test_the_desk_offers_a_plans_other_sections_as_follow_up_buttons(shipped):
    from bot.service.desk import Desk

    desk = Desk(shipped, rate_count=0)
    reply = desk.ask("test", "citizen", "Kế hoạch 37 của Hà Nội năm 2023 dùng những hình thức tuyên truyền nào?")
    assert reply.follow_ups == [("Mục đích", "Mục đích"), ("Yêu cầu", "Yêu cầu"),
                                ("Tổ chức thực hiện", "Tổ chức thực hiện"), ("Lưu ý", "Lưu ý")]
    again = desk.ask("test", "citizen", "Tổ chức thực hiện")  # the button
    assert again.answer.entry_id == HN_2023 and again.answer.parts[1][0] == "Tổ chức thực hiện"
    procedure = desk.ask("test", "citizen", "Đăng ký khai sinh ở đâu?")
    assert [label for label, _ in procedure.follow_ups][:2] == ["Hồ sơ", "Lệ phí"]  # procedures keep theirs


def test_a_topic_section_is_shown_when_an_faq_about_the_topic_does_not_say_it(shipped):
    answer = shipped.ask("Chỉ số PCI có ý nghĩa gì với người dân?")
    assert answer.entry_id == "chi-so-pci" and answer.parts[1][0] == "Ý nghĩa với người dân"
    assert "hoi-dap-cchc-pci-la-gi" in [s.id for s in answer.sources]  # the FAQ it found is still cited
    faq = shipped.ask("Chỉ số PCI là gì?")  # what the FAQ itself asks: the FAQ answers
    assert faq.entry_id == "hoi-dap-cchc-pci-la-gi"


def test_the_section_question_set_is_answered_from_the_right_section(shipped):
    from bench.sections import DEFAULT, load_cases, run

    tallies = run(lambda q: shipped.ask(q, Conversation()), shipped.data.entries, load_cases(DEFAULT))
    assert tallies["all"].n >= 40
    assert tallies["all"].first / tallies["all"].n >= 0.9, "\n".join(tallies["all"].misses)
