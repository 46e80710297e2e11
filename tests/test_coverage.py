"""Questions about procedures the base does not hold: names imported from the portal FAQ, listings in the index,
and the answers that say so instead of showing another procedure's card."""

from __future__ import annotations

import pytest

from bot.channels.render import to_json, to_text
from bot.engine.assistant import Assistant
from bot.engine.features import ListingRule
from bot.engine.index import build_index, open_index
from bot.engine.knowledge import LISTINGS_FILE, load_knowledge
from bot.importers.names import import_names, name_key
from tests.conftest import DATA, write_config

FAQ = DATA / "names" / "faq.tsv"


@pytest.fixture
def names_cfg(tmp_path, kb_copy, e5_dir):
    """The small test base with names imported from the fixture FAQ file."""
    cfg = write_config(tmp_path / "site", [kb_copy], e5_dir=e5_dir)
    kb = load_knowledge(cfg.knowledge_dirs)
    report = import_names(FAQ, cfg.portal_dir, {c for e in kb.entries.values() for c in e.codes},
                          {name_key(e.title) for e in kb.entries.values() if e.kind == "procedure"})
    return cfg, report


def test_names_import_leaves_out_what_the_base_holds_and_the_held_out_rows(names_cfg):
    cfg, report = names_cfg
    rows = (cfg.portal_dir / LISTINGS_FILE).read_text(encoding="utf-8").splitlines()
    codes = [r.split("\t")[0] for r in rows[1:]]
    assert codes == ["1.005555", "1.006666", "1.008888", "1.009999"]  # sorted, one line each
    assert "1.007777" not in codes  # faq_id 15 is held out for evaluation
    assert "1.001193" not in codes  # held by code (đăng ký khai sinh)
    assert "1.000895" not in codes  # held by name: "Thủ tục đăng ký kết hôn cấp xã" is our "Đăng ký kết hôn"
    assert report.held == 2 and report.held_out == 1 and report.written == 4
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in report.problems] == ["7", "8"]  # with line numbers
    assert "Cấp Chứng chỉ hành nghề dược\tBộ Y tế" in rows[3]


def test_a_broken_names_file_is_reported_with_its_line(names_cfg):
    cfg, _ = names_cfg
    path = cfg.portal_dir / LISTINGS_FILE
    path.write_text(path.read_text(encoding="utf-8") + "khong-phai-ma\tTên\tBộ\n", encoding="utf-8")
    kb = load_knowledge(cfg.knowledge_dirs, imported=[cfg.portal_dir])
    problems = [str(p) for p in kb.problems]
    assert any("danh-muc.tsv:6:" in p for p in problems), problems
    assert len(kb.listings) == 4


def test_listings_are_indexed_after_the_entries_and_never_answer_as_entries(names_cfg, encoder):
    cfg, _ = names_cfg
    build_index(cfg, lambda: encoder, progress=False)
    data = open_index(cfg)
    assert len(data.listings) == 4
    assistant = Assistant(cfg, encoder=encoder).load()
    retriever = assistant.retriever
    assert retriever.listing_chunks == list(range(retriever.entry_chunk_count, len(data.chunk_entry)))
    result = retriever.search("xin giấy phép lao động cho người nước ngoài")
    assert all(h.entry_id in data.entries for h in result.hits)  # a listing is never a ranked entry
    assert result.listings[0].listing.code == "1.009999"
    assert result.listings[0].words > 0.5
    # Questions about what the base holds are found as before.
    assert retriever.search("đăng ký khai sinh cho con").hits[0].entry_id == "dang-ky-khai-sinh"


def _judging(assistant):
    """A coverage model that trusts names (the question's words in the best entry's name, and how many more a
    listing's name has), and a confidence model that is always sure, so that only coverage decides."""
    retriever = assistant.retriever
    names, _, _ = retriever.coverage_weights
    weights = tuple(-20.0 if n == "listing_words_margin" else 10.0 if n == "name_coverage" else 0.0 for n in names)
    retriever.coverage_weights, retriever.covered_below = (names, weights, -5.0), 0.5
    retriever.listing_rule = ListingRule(dense_margin=0.0, words_margin=0.1, words=0.6)
    retriever.confidence_weights = (0.0,) * (len(retriever.confidence_weights) - 1) + (10.0,)


def test_a_question_about_a_listed_procedure_gets_its_name_agency_and_a_portal_search(names_cfg, encoder):
    cfg, _ = names_cfg
    build_index(cfg, lambda: encoder, progress=False)
    assistant = Assistant(cfg, encoder=encoder).load()
    _judging(assistant)
    answer = assistant.ask("Thủ tục cấp chứng chỉ hành nghề dược")
    payload = to_json(answer)
    assert payload["kind"] == "listed" and payload["declined"] is True
    assert payload["sources"][0]["topics"] == ["1.008888"]
    assert "Cấp Chứng chỉ hành nghề dược" in payload["answer"] and "Bộ Y tế" in payload["answer"]
    assert "chưa có thông tin chi tiết" in payload["answer"]
    assert any("dvc-tthc-thu-tuc-hanh-chinh.html?keyword=" in x["url"] for x in payload["links"])
    text = to_text(answer)
    assert "lệ phí" not in text.split("Nguồn:")[0].replace("(hồ sơ, lệ phí, thời hạn)", "")  # no invented details


def test_a_question_about_a_procedure_not_held_says_so_and_offers_related_entries_as_such(names_cfg, encoder):
    cfg, _ = names_cfg
    build_index(cfg, lambda: encoder, progress=False)
    assistant = Assistant(cfg, encoder=encoder).load()
    _judging(assistant)
    assert assistant.ask("đăng ký khai sinh cho con cần giấy tờ gì").kind == "answer"  # held: answered
    answer = assistant.ask("xin giấy phép mở quán karaoke cần gì")  # no entry, no listing of it
    payload = to_json(answer)
    assert payload["kind"] == "not_held" and payload["declined"] is True and payload["sources"] == []
    assert "chưa có trong dữ liệu" in payload["answer"]
    assert "keyword=gi%E1%BA%A5y+ph%C3%A9p+m%E1%BB%9F+qu%C3%A1n+karaoke" in payload["links"][0]["url"]
    text = to_text(answer)
    assert "Có thể liên quan (không chắc là thủ tục bạn hỏi):" in text and "Nguồn:" not in text


def test_without_a_coverage_model_nothing_is_judged_not_held(small_index, encoder):
    assistant = Assistant(small_index, encoder=encoder).load()
    assert assistant.retriever.covered_below == 0.0
    assert assistant.ask("xin giấy phép mở quán karaoke cần gì").kind in ("answer", "decline")
