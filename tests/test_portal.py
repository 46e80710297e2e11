"""The national procedure database importer: table splitting on real snippets, the import's bookkeeping,
and (when ../shared is beside the checkout) the full real import."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from bot.config import ROOT
from bot.engine.knowledge import LINKS_FILE, load_knowledge, parse_entry
from bot.importers.portal import (
    Channel,
    clean_conditions,
    documents_sure,
    entry_id,
    format_fee,
    format_time,
    import_portal,
    legal_rows,
    parse_channels,
    parse_documents,
    parse_legal_basis,
    parse_results,
    record_to_entry,
    repair_record,
)

FIXTURES = Path(__file__).parent / "data" / "portal"
SHARED_DATA = ROOT.parent / "shared" / "data"
needs_portal_data = pytest.mark.skipif(
    not (SHARED_DATA / "procedures").is_dir(),
    reason="../shared/data/procedures (the crawled portal records) is not beside this checkout",
)
TODAY = dt.date(2026, 11, 21)
H = "Hình thức nộpThời gianPhí, lệ phíMô tả"
GOOD = {"bo-tai-chinh/2.000717.json", "bo-tai-chinh/1.000014.json", "ngan-hang-nha-nuoc/1.000875.json",
        "bo-tu-phap/1.002010.json"}


# --------------------------------------------------------------------------- cách thức thực hiện


def test_channels_rows_with_units_and_free():
    rows = parse_channels(H + "Trực tiếp15 NgàyMiễn phíTrực tuyến15 NgàyMiễn phíDịch vụ bưu chính15 NgàyMiễn phí")
    assert [(r.channel, r.time_limit, r.unit, r.fee, r.description) for r in rows] == [
        ("Trực tiếp", "15", "Ngày", "Miễn phí", ""),
        ("Trực tuyến", "15", "Ngày", "Miễn phí", ""),
        ("Dịch vụ bưu chính", "15", "Ngày", "Miễn phí", ""),
    ]
    assert all(r.sure for r in rows)
    assert format_time(rows[0]) == "15 ngày"


def test_channels_fee_note_and_description():
    text = (H + "Trực tuyến60 Ngày10,000,000 Việt Nam Đồngkể từ ngày nhận đầy đủ hồ sơ hợp lệ."
            "Trực tiếp20 Ngày làm việc2,500,000 Việt Nam Đồng(Phí : Đồng (Từ ngày 01/7/2025 đến hết ngày 31/12/2026 "
            "áp dụng theo Thông tư số 64/2025/TT-BTC))20 ngày làm việc kể từ khi nhận đủ hồ sơ hợp lệ.")
    online, direct = parse_channels(text)
    assert (online.time_limit, online.fee, online.fee_note) == ("60", "10,000,000 Việt Nam Đồng", "")
    assert online.description == "kể từ ngày nhận đầy đủ hồ sơ hợp lệ."
    assert (direct.time_limit, direct.unit, direct.fee) == ("20", "Ngày làm việc", "2,500,000 Việt Nam Đồng")
    assert direct.fee_note.startswith("Phí : Đồng (Từ ngày 01/7/2025") and direct.fee_note.endswith("64/2025/TT-BTC)")
    assert direct.description == "20 ngày làm việc kể từ khi nhận đủ hồ sơ hợp lệ."
    assert format_fee(direct).startswith("2.500.000 đồng (Phí : Đồng")


def test_channels_bare_number_and_text_time():
    rows = parse_channels(H + "Trực tuyến7Miễn phí(Mức lệ phí cụ thể do Hội đồng nhân dân tỉnh quyết định.)"
                              "Dịch vụ bưu chínhKhông quy địnhMiễn phíThông qua dịch vụ bưu chính công ích"
                              "Trực tiếpKhông có thông tinKhông có thông tinnộp hồ sơ trực tiếp tại trụ sở Cục.")
    assert [(r.time_limit, r.fee) for r in rows] == [("7", "Miễn phí"), ("Không quy định", "Miễn phí"),
                                                     ("Không có thông tin", "Không có thông tin")]
    assert rows[0].fee_note == "Mức lệ phí cụ thể do Hội đồng nhân dân tỉnh quyết định."
    assert format_time(rows[0]) == "7 (Cổng chỉ ghi số, không ghi đơn vị)"
    assert rows[1].description == "Thông qua dịch vụ bưu chính công ích"
    assert format_time(rows[2]) == "Cổng không có thông tin"


def test_channels_digits_run_together():
    # '120 VNĐ' is 1 day and 20 đồng, or 12 days and 0: not guessed, the row keeps its raw text
    rows = parse_channels(H + "Trực tuyến120 VNĐ(20.000 vnđ /tờ khai)Trực tiếp120 VNĐ(20.000 vnđ /tờ khai)")
    assert len(rows) == 2 and not any(r.sure for r in rows)
    assert rows[0].raw == "120 VNĐ(20.000 vnđ /tờ khai)"
    # '140,000 Việt Nam Đồng' can only be 1 and 40,000
    (row,) = parse_channels(H + "Trực tuyến140,000 Việt Nam Đồng(- Xe ô tô từ 10 chỗ trở lên)")
    assert (row.time_limit, row.fee, row.fee_note) == ("1", "40,000 Việt Nam Đồng", "- Xe ô tô từ 10 chỗ trở lên")


def test_channels_unbalanced_note_and_bad_tables():
    (row,) = parse_channels(H + "Trực tuyến5 Ngày làm việc100,000 VNĐ((Phí Thẩm tra, thẩm định )")
    assert not row.sure and row.raw.startswith("5 Ngày làm việc100,000 VNĐ")
    assert parse_channels("Trực tiếp15 NgàyMiễn phí") == []  # no header
    assert parse_channels(H) == []
    assert parse_channels(H + "Nộp tại Sở Tư pháp") == []  # text before any row


def test_small_dong_amount_is_flagged():
    fee = format_fee(Channel("Trực tiếp", "7", "50 VNĐ", "", fee_note="áp dụng mức phí 25.000 đồng/hồ sơ"))
    assert fee.startswith("50 VNĐ (Cổng ghi đúng số này") and fee.endswith("(áp dụng mức phí 25.000 đồng/hồ sơ)")
    assert format_fee(Channel("Trực tiếp", "5", "10 USD", "", fee_note="/lần")) == "10 USD (/lần)"


# --------------------------------------------------------------------------- thành phần hồ sơ


def test_documents_groups_quantities_and_forms():
    text = ("--Tên giấy tờMẫu đơn, tờ khaiSố lượngDự thảo Điều lệ của công ty luật1 bản chínhGiấy tờ chứng minh về "
            "trụ sở của tổ chức hành nghề luật sư.0 bản chính,1 bản saoGiấy đề nghị đăng ký hoạt động theo mẫu thống "
            "nhấtMẫu TP-LS-02-sđ.docx1 bản chính")
    (group,) = parse_documents(text)
    assert group.title == ""
    assert [d.line() for d in group.documents] == [
        "Dự thảo Điều lệ của công ty luật (1 bản chính)",
        "Giấy tờ chứng minh về trụ sở của tổ chức hành nghề luật sư. (1 bản sao)",
        "Giấy đề nghị đăng ký hoạt động theo mẫu thống nhất (mẫu: Mẫu TP-LS-02-sđ.docx; 1 bản chính)",
    ]
    assert documents_sure([group])


def test_documents_titles_and_digits_before_quantity():
    text = ("* Giấy tờ phải nộp:Tên giấy tờMẫu đơn, tờ khaiSố lượng+ Văn bản đề nghị theo mẫu quy định tại Phụ lục IX "
            "Nghị định số 56/2023/NĐ-CP ngày 24/07/20231 bản chính- Chứng cứ chứng minh quan hệ cha, con gồm:"
            "0 bản chính"
            "* Giấy tờ phải xuất trình:Tên giấy tờMẫu đơn, tờ khaiSố lượngHộ chiếu hoặc thẻ căn cước1 bản chính")
    submit, show = parse_documents(text)
    assert submit.title == "Giấy tờ phải nộp:" and show.title == "Giấy tờ phải xuất trình:"
    assert submit.documents[0].name.endswith("ngày 24/07/2023") and submit.documents[0].originals == 1
    assert submit.documents[1].line() == "Chứng cứ chứng minh quan hệ cha, con gồm:"  # 0 copies: no quantity shown
    assert show.documents[0].line() == "Hộ chiếu hoặc thẻ căn cước (1 bản chính)"
    assert parse_documents("--") == [] and parse_documents("") == []


# --------------------------------------------------------------------------- căn cứ pháp lý


def test_legal_basis_pairs():
    text = ("Tên văn bản pháp lýMã văn bảnLuật 54/2014/QH1354/2014/QH13Thuế xuất khẩu, thuế nhập khẩu107/2016/QH13"
            "Quy định chi tiết một số điều và biện pháp thi hành Luật thuế xuất khẩu, thuế nhập khẩu134/2016/NĐ-CP")
    rows = parse_legal_basis(text)
    assert rows is not None
    assert [(r.name, r.number) for r in rows] == [
        ("Luật 54/2014/QH13", "54/2014/QH13"),
        ("Thuế xuất khẩu, thuế nhập khẩu", "107/2016/QH13"),
        ("Quy định chi tiết một số điều và biện pháp thi hành Luật thuế xuất khẩu, thuế nhập khẩu", "134/2016/NĐ-CP"),
    ]
    assert [r.line() for r in rows][:2] == ["Luật 54/2014/QH13", "Thuế xuất khẩu, thuế nhập khẩu (107/2016/QH13)"]


def test_legal_basis_prefixed_cells_and_names_that_are_numbers():
    rows = parse_legal_basis("Tên văn bản pháp lýMã văn bản73/2025/TT-NHNNSố 73/2025/TT-NHNNLuật Các tổ chức tín "
                             "dụngLuật số 32/2024/QH15")
    assert rows is not None
    assert [(r.name, r.number) for r in rows] == [("73/2025/TT-NHNN", "Số 73/2025/TT-NHNN"),
                                                  ("Luật Các tổ chức tín dụng", "Luật số 32/2024/QH15")]
    rows = parse_legal_basis("Tên văn bản pháp lýMã văn bảnNghị định số 118/2025/NĐ-CP của Chính phủ: Về thực hiện "
                             "thủ tục hành chính theo cơ chế một cửa118/2025/NĐ-CPThông tư 80/2021/TT-BTC80/2021/TT-BTC"
                             "Luật Doanh nghiệp 202059/2020/QH14")
    assert rows is not None
    assert [r.number for r in rows] == ["118/2025/NĐ-CP", "80/2021/TT-BTC", "59/2020/QH14"]
    assert rows[2].name == "Luật Doanh nghiệp 2020"


def test_legal_basis_unsure_is_none():
    # a truncated issuing body ('NĐ-C') and a number glued on the left but followed by a space
    rows, why = legal_rows("Tên văn bản pháp lýMã văn bảnVề một cửa118/2025/NĐ-CQuy định về hóa đơn123/2020/NĐ-CP")
    assert rows is None and why.startswith("cơ quan ban hành lạ")
    assert parse_legal_basis("Tên văn bản pháp lýMã văn bảnNghị quyết cắt giảm thủ tục hành chính.24/2026/NQ-CP "
                             "Hướng dẫn về quản lý ngoại hối10/2017/TT-NHNN") is None
    assert parse_legal_basis("Tên văn bản pháp lýMã văn bản06/2007/QH12Luật Hóa chất") is None  # columns swapped
    assert parse_legal_basis("Không có thông tin") is None


# --------------------------------------------------------------------------- kết quả, điều kiện, sửa lệch


def test_results_cut_before_page_furniture():
    names, note = parse_results("Giấy chứng nhận cải tạoMã: KQ.G04.000501Giấy chứng nhận kiểm định, tem kiểm định"
                                "Mã: KQ.G04.000495Từ khóaKhông có thông tinMô tảKhông có thông tinChọn cơ quan thực "
                                "hiệnTỉnh/ Thành phốBộ ngànhNộp hồ sơ")
    assert names == ["Giấy chứng nhận cải tạo", "Giấy chứng nhận kiểm định, tem kiểm định"] and note == ""
    assert parse_results("") == ([], "")
    assert clean_conditions("Không có thông tinTừ khóaKhông có thông tinMô tảKhông có thông tinChọn cơ quan thực "
                            "hiệnTỉnh/ Thành phố") == "Không có thông tin"


def test_repair_of_fields_cut_at_a_label():
    record = json.loads((FIXTURES / "bo-tai-chinh/2.000717.json").read_text(encoding="utf-8"))
    assert "Tên giấy tờ" not in record["thanh_phan_ho_so"]  # the steps' tail landed here
    fixed, what = repair_record(record)
    assert what == ["trinh_tu_thuc_hien/thanh_phan_ho_so"]
    assert fixed["trinh_tu_thuc_hien"].endswith("nhận tiền lương hưu, trợ cấp BHXH.")
    (group,) = parse_documents(fixed["thanh_phan_ho_so"])
    assert group.documents[0].name.startswith("Giấy đề nghị nhận chế độ BHXH khi người hưởng từ trần")


# --------------------------------------------------------------------------- entries


def _record(**changes: str) -> dict[str, str]:
    record = json.loads((FIXTURES / "bo-tu-phap/1.002010.json").read_text(encoding="utf-8"))
    record.update(changes)
    return record


def _parse(tmp_path: Path, text: str, code: str = "1.002010"):
    path = tmp_path / "thu-tuc" / f"{entry_id(code)}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return parse_entry(path, f"portal/thu-tuc/{path.name}", TODAY)


def test_entry_front_matter_and_sections(tmp_path):
    text = record_to_entry(_record(), "bo-tu-phap/1.002010.json", TODAY)
    entry, problems = _parse(tmp_path, text)
    assert [p for p in problems if not p.warning] == [] and entry is not None
    assert entry.id == "tthc-1-002010" and entry.codes == ["1.002010"]
    assert entry.meta["nhap_tu"] == "bo-tu-phap/1.002010.json"
    assert entry.meta["nop_truc_tuyen"] == "dvcqg" and entry.meta["ngay_du_lieu"] == "2026-11-21"
    assert entry.meta["co_quan_thuc_hien"] == "Sở Tư pháp"
    assert "dành cho: Tổ chức (không bao gồm doanh nghiệp, HTX)" in entry.summary
    assert [s.heading for s in entry.sections] == ["Đối tượng, điều kiện", "Thành phần hồ sơ", "Trình tự thực hiện",
                                                   "Thời hạn giải quyết", "Phí, lệ phí", "Nơi nộp, cách thức",
                                                   "Nộp trực tuyến", "Căn cứ pháp lý", "Kết quả"]
    assert "7 ngày làm việc" in entry.section("Thời hạn giải quyết").text
    assert "Chọn cơ quan" not in entry.section("Kết quả").text


def test_names_with_colons_and_brackets_round_trip(tmp_path):
    name = "[Thử nghiệm] Cấp phép: loại A # ghi chú \"đặc biệt\""
    body = "Sở Tư pháp: Phòng Bổ trợ tư pháp"
    text = record_to_entry(_record(ten_thu_tuc=f"  {name}\xa0", co_quan_thuc_hien=body), "x/1.002010.json", TODAY)
    entry, problems = _parse(tmp_path, text)
    assert [p for p in problems if not p.warning] == [] and entry is not None
    assert entry.title == name and entry.meta["co_quan_thuc_hien"] == body


def test_no_information_is_said_not_invented(tmp_path):
    record = _record(can_cu_phap_ly="Không có thông tin", thanh_phan_ho_so="--", yeu_cau_dieu_kien="Không có thông tin",
                     cach_thuc_thuc_hien=H + "Trực tiếpKhông có thông tinKhông có thông tin")
    entry, problems = _parse(tmp_path, record_to_entry(record, "x/1.002010.json", TODAY))
    assert entry is not None and [p for p in problems if not p.warning] == []
    assert entry.section("Đối tượng, điều kiện") is None
    for heading in ("Căn cứ pháp lý", "Thành phần hồ sơ"):
        assert entry.section(heading).text.startswith("Cổng Dịch vụ công quốc gia không có thông tin")
    assert "Cổng không có thông tin" in entry.section("Phí, lệ phí").text
    assert "nop_truc_tuyen" not in entry.meta


# --------------------------------------------------------------------------- import


def _links_dir(tmp_path: Path) -> Path:
    """The official links the entries name (nop_truc_tuyen: dvcqg), without the curated entries."""
    links = tmp_path / "links"
    links.mkdir(exist_ok=True)
    shutil.copy(ROOT / "knowledge" / LINKS_FILE, links / LINKS_FILE)
    return links


def _errors(tmp_path: Path, dest: Path) -> list[str]:
    kb = load_knowledge([_links_dir(tmp_path), dest], today=TODAY)
    return [str(p) for p in kb.errors]


@pytest.fixture
def src(tmp_path) -> Path:
    folder = tmp_path / "src"
    shutil.copytree(FIXTURES, folder)
    return folder


def test_import_writes_good_records_and_reports_bad_ones(tmp_path, src):
    dest = tmp_path / "portal"
    report = import_portal(src, dest, source_date=TODAY)
    assert (report.read, report.written, report.unchanged, report.removed, report.bad) == (8, 4, 0, 0, 4)
    bad = "\n".join(report.bad_records)
    assert "loi/1.900001.json: JSON hỏng" in bad
    assert "loi/1.900002.json: thiếu 'ten_thu_tuc'" in bad
    assert "loi/1.900003.json: trường không xác định: ghi_chu" in bad
    assert "loi/1.900004.json: bản ghi phải là một đối tượng JSON" in bad
    written = sorted(p.name for p in (dest / "thu-tuc").iterdir())
    assert written == sorted(f"{entry_id(Path(r).stem)}.md" for r in GOOD)
    assert _errors(tmp_path, dest) == []
    assert report.stats.repaired == 1 and report.stats.channels_partly == 1  # 2.000717; 1.000014's '120 VNĐ'


def test_reimport_changes_nothing_and_one_change_rewrites_one_file(tmp_path, src):
    dest = tmp_path / "portal"
    import_portal(src, dest, source_date=TODAY)
    files = sorted((dest / "thu-tuc").glob("*.md"))
    past = time.time() - 1000
    for f in files:
        os.utime(f, (past, past))
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}

    again = import_portal(src, dest, source_date=TODAY)
    assert (again.written, again.unchanged, again.removed) == (0, 4, 0)
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files} == before

    record_path = src / "ngan-hang-nha-nuoc" / "1.000875.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["co_quan_thuc_hien"] = "Ngân hàng Nhà nước Khu vực 1"
    record_path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    changed = import_portal(src, dest, source_date=TODAY)
    assert (changed.written, changed.unchanged) == (1, 3)
    after = {f.name: f.stat().st_mtime_ns for f in files}
    assert [n for n in after if after[n] != before[n][0]] == ["tthc-1-000875.md"]
    assert "co_quan_thuc_hien: Ngân hàng Nhà nước Khu vực 1" in (dest / "thu-tuc/tthc-1-000875.md").read_text()
    assert not list((dest / "thu-tuc").glob(".*"))  # no temporary files left behind


def test_an_imported_record_carries_the_data_date_never_the_import_date(tmp_path, src):
    from bot.channels.render import cite
    from bot.engine.answer import _source
    from bot.engine.index import Record

    dest = tmp_path / "portal"
    import_portal(src, dest)  # no date of the data given
    text = (dest / "thu-tuc/tthc-1-002010.md").read_text()
    assert "ngay_kiem_tra" not in text and "ngay_du_lieu" not in text
    kb = load_knowledge([_links_dir(tmp_path), dest], today=TODAY)
    assert not kb.errors, kb.errors
    entry = kb.entries["tthc-1-002010"]
    record = Record(entry.id, entry.kind, entry.path, entry.meta, entry.summary, entry.sections)
    assert cite(_source(record, 1.0)).endswith("(theo dữ liệu Cổng Dịch vụ công quốc gia)")
    report = import_portal(src, dest, source_date=dt.date(2026, 3, 15))  # the crawl's date, when known
    assert report.written == 4
    kb = load_knowledge([_links_dir(tmp_path), dest], today=TODAY)
    entry = kb.entries["tthc-1-002010"]
    record = Record(entry.id, entry.kind, entry.path, entry.meta, entry.summary, entry.sections)
    assert cite(_source(record, 1.0)).endswith("(theo dữ liệu Cổng Dịch vụ công quốc gia, ngày 15/03/2026)")


def test_removed_record_removes_its_entry_only(tmp_path, src):
    dest = tmp_path / "portal"
    import_portal(src, dest, source_date=TODAY)
    curated = dest / "thu-tuc" / "tthc-9-999999.md"
    curated.write_text("---\nid: tthc-9-999999\nloai: thu-tuc\n---\n", encoding="utf-8")  # not ours: kept
    (src / "bo-tu-phap" / "1.002010.json").unlink()
    report = import_portal(src, dest, source_date=TODAY)
    assert (report.removed, report.written, report.unchanged) == (1, 0, 3)
    assert not (dest / "thu-tuc" / "tthc-1-002010.md").exists() and curated.exists()


def test_record_that_turns_bad_keeps_its_entry(tmp_path, src):
    dest = tmp_path / "portal"
    import_portal(src, dest, source_date=TODAY)
    (src / "bo-tu-phap" / "1.002010.json").write_text('{"ma_thu_tuc": "1.002010",', encoding="utf-8")
    report = import_portal(src, dest, source_date=TODAY)
    assert report.removed == 0 and (dest / "thu-tuc" / "tthc-1-002010.md").exists()
    assert any(m.startswith("bo-tu-phap/1.002010.json: JSON hỏng") for m in report.bad_records)


def test_lists_fill_missing_body_and_count_codes_without_records(tmp_path, src):
    import openpyxl

    record_path = src / "bo-tu-phap" / "1.002010.json"
    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["co_quan_thuc_hien"] = "Không có thông tin"
    record_path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["DANH SÁCH THỦ TỤC HÀNH CHÍNH"])
    ws.append(["Mã số", "Tên", "Cơ quan ban hành", "Cơ quan thực hiện", "Lĩnh vực"])
    ws.append(["1.002010", "Đăng ký hoạt động của tổ chức hành nghề luật sư", "Bộ Tư pháp", "Sở Tư Pháp\nSở Tư pháp",
               "Luật sư"])
    ws.append(["1.999999", "Thủ tục chỉ có trong danh sách", "Bộ Tư pháp", "Sở Tư Pháp", "Luật sư"])
    lists = tmp_path / "lists"
    lists.mkdir()
    wb.save(lists / "danh-sach.xlsx")
    dest = tmp_path / "portal"
    report = import_portal(src, dest, lists=lists, source_date=TODAY)
    assert report.missing_from_records == 1 and report.stats.bodies_from_lists == 1
    text = (dest / "thu-tuc" / "tthc-1-002010.md").read_text(encoding="utf-8")
    assert "co_quan_thuc_hien: Sở Tư Pháp, Sở Tư pháp" in text and "cơ quan ban hành: Bộ Tư pháp" in text
    assert _errors(tmp_path, dest) == []


@needs_portal_data
def test_full_real_import(tmp_path):
    dest = tmp_path / "portal"
    started = time.perf_counter()
    report = import_portal(SHARED_DATA / "procedures", dest, lists=SHARED_DATA / "procedure-lists", source_date=TODAY)
    elapsed = time.perf_counter() - started
    assert report.read == 2642 and report.entries >= 2600
    # 17 records hold another procedure's page (raw_text names code 1.014023 or 3.000579)
    assert report.bad == 17, report.bad_records
    assert all("nội dung là của thủ tục khác" in m for m in report.bad_records)
    assert report.missing_from_records == 0
    assert elapsed < 60
    assert _errors(tmp_path, dest) == []
    assert report.stats.channels_split / report.entries > 0.9
    assert report.stats.documents_split / report.entries > 0.9
    again = import_portal(SHARED_DATA / "procedures", dest, lists=SHARED_DATA / "procedure-lists", source_date=TODAY)
    assert again.written == 0 and again.unchanged == report.entries
