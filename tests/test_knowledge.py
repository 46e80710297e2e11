"""Knowledge files: parsing, validation with file:line, and the shipped base's completeness."""

import datetime as dt
import subprocess
import sys
import tomllib

from bot.config import ROOT
from bot.engine.knowledge import DISTRICT_RE, load_knowledge
from tests.conftest import FIXTURE_KB, SHARED, needs_shared

TODAY = dt.date(2026, 11, 21)


def write(base, rel, text):
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_fixture_base_parses_with_codes_kept_as_text():
    kb = load_knowledge([FIXTURE_KB], today=TODAY)
    assert not kb.errors, kb.errors
    entry = kb.entries["dang-ky-khai-sinh"]
    assert entry.codes == ["1.001193"]  # YAML would make it the number 1.001193 without BaseLoader
    assert entry.topics == ["dang-ky-khai-sinh", "1.001193"]
    assert kb.entries["hoi-dap-khai-sinh-qua-han"].topics == ["hoi-dap-khai-sinh-qua-han", "dang-ky-khai-sinh"]
    assert [s.heading for s in entry.sections][:2] == ["Thành phần hồ sơ", "Trình tự thực hiện"]
    assert kb.link_for("dvcqg").url == "https://dichvucong.gov.vn"
    assert kb.hotline.number == "18001096"
    assert ("CCCD", ["căn cước công dân", "thẻ căn cước"]) in kb.synonyms


def test_codes_that_yaml_would_turn_into_numbers_stay_text(kb_copy):
    path = kb_copy / "thu-tuc/dang-ky-ket-hon.md"
    path.write_text(path.read_text(encoding="utf-8").replace("[1.000894]", "1.001610"), encoding="utf-8")
    kb = load_knowledge([kb_copy], today=TODAY)
    assert kb.entries["dang-ky-ket-hon"].codes == ["1.001610"]


def test_stale_procedure_is_a_warning_not_an_error():
    kb = load_knowledge([FIXTURE_KB], today=TODAY)
    assert [str(w) for w in kb.warnings] == [
        "kb/thu-tuc/cap-the-can-cuoc.md:11: cảnh báo: thông tin kiểm tra lần cuối ngày 2024-01-15, đã hơn một năm"
        " — đối chiếu lại với trang chính thức rồi cập nhật 'ngay_kiem_tra'"
    ]


BROKEN = """---
id: thu-tuc-hong
loai: thu-tuc
tieu_de: Thủ tục hỏng
ma_thu_tuc: [1.00161, abc]
linh_vucc: Hộ tịch
cap_thuc_hien: Cấp huyện
co_quan_thuc_hien: Ủy ban nhân dân cấp xã
nguon: dichvucong.gov.vn
ngay_kiem_tra: 21/11/2026
nop_truc_tuyen: khong-co
---

Tóm tắt.

## Thanh phan ho so

- Tờ khai.

## Phí, lệ phí

## Nơi nộp, cách thức

Nộp tại UBND huyện nơi cư trú.
"""


def test_every_problem_is_reported_with_file_and_line(kb_copy):
    write(kb_copy, "thu-tuc/thu-tuc-hong.md", BROKEN)
    kb = load_knowledge([kb_copy], today=TODAY)
    got = {(p.path, p.line, p.message.split(" (")[0]) for p in kb.errors}
    path = "kb/thu-tuc/thu-tuc-hong.md"
    expected = {
        (path, 5, "mã thủ tục '1.00161' không đúng dạng"),
        (path, 5, "mã thủ tục 'abc' không đúng dạng"),
        (path, 6, "trường 'linh_vucc' không dùng cho loại 'thu-tuc'"),
        (path, 1, "thiếu trường 'linh_vuc'"),
        (path, 7, "'cap_thuc_hien' nêu cơ quan cấp huyện"),
        (path, 9, "'nguon' phải là đường dẫn bắt đầu bằng https://, đang là 'dichvucong.gov.vn'"),
        (path, 10, "'ngay_kiem_tra' phải là ngày dạng 2026-01-31, đang là '21/11/2026'"),
        (path, 11, "'nop_truc_tuyen' không phải đường dẫn hay mã liên kết: 'khong-co'"),
        (path, 16, "tiêu đề mục '## Thanh phan ho so' không có trong danh sách cố định"),
        (path, 20, "mục '## Phí, lệ phí' không có nội dung"),
        (path, 24, "mục 'Nơi nộp, cách thức' nêu cơ quan cấp huyện là nơi nộp"),
    }
    assert expected <= got, sorted(got - expected)
    missing = {m for p, line, m in got if m.startswith("thiếu mục")}
    assert missing == {f"thiếu mục '## {h}'" for h in
                       ("Thành phần hồ sơ", "Trình tự thực hiện", "Thời hạn giải quyết", "Nộp trực tuyến",
                        "Căn cứ pháp lý")}
    typo = next(p for p in kb.errors if "linh_vucc" in p.message)
    assert "có phải ý bạn là 'linh_vuc'?" in str(typo)
    assert str(typo).startswith("kb/thu-tuc/thu-tuc-hong.md:6: ")


def test_structural_problems_of_files(kb_copy):
    write(kb_copy, "hoi-dap/trong.md", "")
    write(kb_copy, "hoi-dap/khong-front-matter.md", "Chỉ có chữ.\n")
    write(kb_copy, "hoi-dap/chua-dong.md", "---\nid: chua-dong\nloai: hoi-dap\n")
    write(kb_copy, "hoi-dap/sai-yaml.md", "---\nid: sai-yaml\nloai: hoi-dap\ncau_hoi: [a, b\n---\nx\n")
    write(kb_copy, "hoi-dap/ten-khac.md", "---\nid: hoi-dap-x\nloai: hoi-dap\ncau_hoi: [a]\nlien_quan: [khong-co-muc-nay]"
                                          "\n---\nTrả lời.\n")
    write(kb_copy, "chu-de/trung-id.md", "---\nid: mot-cua-lien-thong\nloai: chu-de\ntieu_de: Trùng\n---\nx\n")
    (kb_copy / "chu-de/nhi-phan.md").write_bytes(b"---\nid: x\n\xff\xfe\n")
    kb = load_knowledge([kb_copy], today=TODAY)
    messages = {(p.path.split("/", 1)[1], p.line): p.message for p in kb.errors}
    assert messages[("hoi-dap/trong.md", 1)] == "tệp trống"
    assert messages[("hoi-dap/khong-front-matter.md", 1)].startswith("tệp phải bắt đầu bằng dòng '---'")
    assert messages[("hoi-dap/chua-dong.md", 1)].startswith("phần khai báo không có dòng '---' đóng lại")
    assert messages[("hoi-dap/sai-yaml.md", 4)].startswith("phần khai báo sai cú pháp")
    assert messages[("hoi-dap/ten-khac.md", 2)] == "tên tệp phải là 'hoi-dap-x.md' cho trùng id"
    assert messages[("hoi-dap/ten-khac.md", 5)] == "'lien_quan' nhắc tới 'khong-co-muc-nay' nhưng không có mục nào có id này"
    assert messages[("chu-de/trung-id.md", 2)].startswith("id 'mot-cua-lien-thong' đã dùng ở")
    assert messages[("chu-de/nhi-phan.md", 3)].startswith("tệp không phải UTF-8 (byte 0xFF")
    assert "mot-cua-lien-thong" in kb.entries  # the first one stays


def test_check_command_lists_problems_and_exits_non_zero(kb_copy, tmp_path):
    write(kb_copy, "thu-tuc/thu-tuc-hong.md", BROKEN)
    (tmp_path / "config.toml").write_text(f'[knowledge]\ndirs = ["{kb_copy}"]\n', encoding="utf-8")
    run = subprocess.run([sys.executable, "index_builder.py", "--check", "--config", str(tmp_path / "config.toml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "kb/thu-tuc/thu-tuc-hong.md:10: 'ngay_kiem_tra' phải là ngày dạng 2026-01-31" in run.stderr
    assert "lỗi" in run.stdout


def test_shipped_base_is_clean():
    kb = load_knowledge([ROOT / "knowledge"])
    assert not kb.errors, "\n".join(map(str, kb.errors))
    faqs = [e for e in kb.entries.values() if e.kind == "faq"]
    assert all(e.values("lien_quan") for e in faqs)


def test_shipped_base_names_no_district_body_as_todays_place():
    kb = load_knowledge([ROOT / "knowledge"])
    for entry in kb.entries.values():
        if entry.kind != "procedure":
            continue
        for key in ("cap_thuc_hien", "co_quan_thuc_hien"):
            assert not DISTRICT_RE.search(entry.text(key)), (entry.path, key)


def test_check_on_the_shipped_base_runs_in_seconds():
    run = subprocess.run([sys.executable, "index_builder.py", "--check"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert " 0 lỗi" in run.stdout


@needs_shared
def test_every_catalogue_id_is_in_the_base():
    catalogue = tomllib.loads((SHARED / "catalogue.toml").read_text(encoding="utf-8"))
    kb = load_knowledge([ROOT / "knowledge"])
    kinds = {"procedure": "procedure", "topic": "topic", "plan": "plan"}
    missing = [e["id"] for e in catalogue["entry"] if e["id"] not in kb.entries]
    assert not missing, f"catalogue ids without an entry: {missing}"
    wrong_kind = [e["id"] for e in catalogue["entry"] if kb.entries[e["id"]].kind != kinds[e["kind"]]]
    assert not wrong_kind


def test_links_file_problems_have_lines(kb_copy):
    (kb_copy / "lien-ket.yaml").write_text(
        "duong_day_nong:\n  ten: Tổng đài\n  so: \"18001096\"\nlien_ket:\n  - id: a\n    ten: A\n    url: https://a.vn\n"
        "  - id: b\n    ten: B\n    url: khong-phai-url\n  - id: a\n    ten: A2\n    url: https://a2.vn\n  - ten: thiếu id\n",
        encoding="utf-8")
    kb = load_knowledge([kb_copy], today=TODAY)
    problems = [(p.line, p.message) for p in kb.errors if p.path.endswith("lien-ket.yaml")]
    assert problems == [(8, "'url' không hợp lệ: 'khong-phai-url'"), (11, "liên kết 'a' bị trùng"),
                        (14, "mỗi liên kết cần 'id', 'ten' và 'url'")]
    assert kb.hotline.number == "18001096" and list(kb.links) == ["a"]


def test_dictionary_problems_have_lines(kb_copy):
    (kb_copy / "tu-dien.txt").write_text("# ghi chú\nCCCD = căn cước công dân\nkhông có dấu bằng\ncccd = trùng\n",
                                         encoding="utf-8")
    kb = load_knowledge([kb_copy], today=TODAY)
    problems = [(p.line, p.message.split(" —")[0]) for p in kb.errors if p.path.endswith("tu-dien.txt")]
    assert problems == [(3, "dòng phải có dạng 'từ = cách gọi đầy đủ; cách gọi khác'"), (4, "'cccd' đã có ở dòng 2")]


# --- facts that apply until a date ({den_het: …}) ---

def test_a_fact_with_an_end_date_says_so_and_is_left_out_once_it_has_passed():
    from bot.engine.knowledge import apply_until

    text = ("- **Lệ phí:** 70.000 đồng.\n"
            "- Từ 01/7/2025 chỉ thu 50%, tức **35.000 đồng**\n"
            "  (Thông tư 64/2025/TT-BTC). {den_het: 2026-12-31}\n"
            "- Nhận qua bưu chính: trả cước.")
    before = apply_until(text, dt.date(2026, 12, 31))
    assert "(Thông tư 64/2025/TT-BTC), áp dụng đến hết 31/12/2026." in before and "den_het" not in before
    after = apply_until(text, dt.date(2027, 1, 1))
    assert after == "- **Lệ phí:** 70.000 đồng.\n- Nhận qua bưu chính: trả cước."  # the whole item, both lines
    section = "{den_het: 2026-12-31}\nMột quy định chuyển tiếp."
    assert apply_until(section, dt.date(2026, 6, 1)).startswith("Nội dung dưới đây áp dụng đến hết 31/12/2026.")
    assert apply_until(section, dt.date(2027, 1, 1)) == ""


def test_check_warns_30_days_before_an_end_date_and_refuses_the_base_after_it(kb_copy):
    path = kb_copy / "thu-tuc/dang-ky-ket-hon.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(
        "Kết hôn của công dân Việt Nam cư trú ở trong nước được miễn lệ phí.\n",
        "Kết hôn của công dân Việt Nam cư trú ở trong nước được miễn lệ phí.\n\n"
        "- Một mức giảm thử nghiệm. {den_het: 2026-12-31}\n- Mức khác. {den_het: 2026-02-30}\n"), encoding="utf-8")
    line = text.split("\n").index("Kết hôn của công dân Việt Nam cư trú ở trong nước được miễn lệ phí.") + 3
    far = load_knowledge([kb_copy], today=dt.date(2026, 11, 1))
    assert [str(p) for p in far.problems if "den_het" in p.message or "áp dụng đến" in p.message] == [
        f"kb/thu-tuc/dang-ky-ket-hon.md:{line + 1}: 'den_het' phải là ngày dạng 2026-12-31, đang là '2026-02-30' — "
        "viết ngày cuối cùng còn áp dụng theo dạng năm-tháng-ngày"]
    near = load_knowledge([kb_copy], today=dt.date(2026, 12, 5))
    [warning] = [w for w in near.warnings if "áp dụng đến" in w.message]
    assert (warning.path, warning.line) == ("kb/thu-tuc/dang-ky-ket-hon.md", line)
    assert "còn 26 ngày" in warning.message
    past = load_knowledge([kb_copy], today=dt.date(2027, 1, 1))
    [error] = [e for e in past.errors if "áp dụng đến" in e.message]
    assert (error.path, error.line) == ("kb/thu-tuc/dang-ky-ket-hon.md", line) and "đã hết hạn" in error.message


def test_every_time_limited_fact_in_the_shipped_base_carries_its_end_date():
    """A fee reduction 'until 31/12/2026' written as plain text would be told to citizens after it lapsed: every
    paragraph or item naming an end date still to come states it as {den_het: …}, and so does every 50% reduction."""
    import re

    from bot.engine.knowledge import _blocks

    end = re.compile(r"(?:đến|tới) hết (?:ngày )?(\d{1,2})/(\d{1,2})/(\d{4})")
    missing = []
    for path in sorted((ROOT / "knowledge").rglob("*.md")):
        if "mau" in path.parts or path.name == "README.md":
            continue
        lines = path.read_text(encoding="utf-8").split("\n")
        for block in _blocks(lines):
            text = " ".join(lines[i] for i in block)
            future = [m for m in end.finditer(text) if dt.date(int(m[3]), int(m[2]), int(m[1])) >= dt.date.today()]
            reduction = re.search(r"(?:chỉ )?thu 50%|giảm 50%", text)
            if (future or reduction) and "{den_het:" not in text:
                missing.append(f"{path.relative_to(ROOT)}:{block[0] + 1}: {text[:90]}")
    assert not missing, "\n".join(missing)
