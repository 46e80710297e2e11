"""Writing entries: one portal record → the text of its knowledge file, and the import run over a folder of records
(only changed files are rewritten, atomically; entries whose record disappeared are removed).

Imports the engine's knowledge schema, `parse` and `tables`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bot.engine.knowledge import (
    CAN_CU,
    CODE_RE,
    DISTRICT_RE,
    DOI_TUONG,
    HO_SO,
    KET_QUA,
    LUU_Y,
    NOI_NOP,
    PHI,
    THOI_HAN,
    TRINH_TU,
    TRUC_TUYEN,
)

from .parse import (
    LAW_HEADER,
    NO_INFO,
    Channel,
    channel_body,
    channel_list,
    check_record,
    clean,
    clean_conditions,
    documents_sure,
    format_fee,
    format_time,
    no_info,
    one_line,
    parse_channels,
    parse_documents,
    parse_legal_basis,
    parse_results,
    repair_record,
)
from .tables import ListRow, read_lists

ID_PREFIX = "tthc-"
FOLDER = "thu-tuc"
PORTAL_URL = "https://dichvucong.gov.vn"
# An unchanged entry keeps its old check date; past this age a re-import refreshes it anyway, so imported
# entries never reach the validator's "older than a year" warning while their text stays the same.


# --------------------------------------------------------------------------- entries


def markdown_safe(text: str) -> str:
    """Keep portal text from turning into Markdown headings or closing the front matter."""
    return re.sub(r"(?m)^(\s*)(#|---\s*$)", r"\1\\\2", text)


def _indent(text: str) -> str:
    """Continuation lines of a list item."""
    return text.replace("\n", "\n  ")



def entry_id(code: str) -> str:
    """'1.001193' -> 'tthc-1-001193'."""
    return ID_PREFIX + code.replace(".", "-")


_PLAIN_RE = re.compile(r"^[^\s\-?:,\[\]{}#&*!|>'\"%@`][^\n]*$")


def yaml_value(value: str) -> str:
    """A front matter scalar: plain when YAML reads it back unchanged, else double-quoted (JSON escapes)."""
    if value and _PLAIN_RE.match(value) and ": " not in value and " #" not in value \
            and not value.endswith((":", " ")) and "\\" not in value:
        return value
    return json.dumps(value, ensure_ascii=False)


@dataclass
class Stats:
    """How well the flattened tables split, over the records imported."""

    channels_split: int = 0
    channels_partly: int = 0
    channels_raw: int = 0
    documents_split: int = 0
    documents_raw: int = 0
    legal_split: int = 0
    legal_raw: int = 0
    no_legal: int = 0
    repaired: int = 0
    bodies_from_lists: int = 0
    no_body: int = 0
    district: int = 0
    raw_examples: dict[str, list[str]] = field(default_factory=dict)

    def example(self, kind: str, rel: str) -> None:
        examples = self.raw_examples.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(rel)


# Official records published before the 2025 reform may still name district bodies: say so next to them.
DISTRICT_NOTE = ("Bản ghi trên Cổng Dịch vụ công quốc gia còn nhắc cơ quan cấp huyện. Từ ngày 01/7/2025 chính quyền "
                 "địa phương chỉ còn hai cấp (tỉnh và xã), không còn cấp huyện: hãy xem nơi tiếp nhận hiện nay trên "
                 "trang thủ tục hoặc hỏi Ủy ban nhân dân cấp xã nơi cư trú.")


def _no_info_line(url: str) -> str:
    return f"Cổng Dịch vụ công quốc gia không có thông tin cho mục này; xem trang thủ tục: {url}"


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {_indent(item)}" for item in items)


def _render_channels(rows: list[Channel], body: str | None, url: str, record: dict[str, str],
                     agency: str) -> tuple[str, str, str, str, bool]:
    """Sections Thời hạn, Phí, Nơi nộp, Nộp trực tuyến, and whether online submission exists."""
    raw = clean(body or "")
    online = any(r.channel == "Trực tuyến" for r in rows) if rows else bool(re.search(r"Trực tuyến(?=\d|[A-ZĐ])", raw))
    where: list[str] = []
    if rows:
        channels = channel_list(r.channel for r in rows).lower()
        where.append(f"Hình thức nộp theo Cổng Dịch vụ công quốc gia: {channels}.")
    address = clean(record.get("dia_chi_tiep_nhan", ""))
    if address and not no_info(address):
        where.append(f"Địa chỉ tiếp nhận hồ sơ: {address}")
    where.append(f"Cơ quan thực hiện: {agency}.")
    for key, label in (("co_quan_duoc_uy_quyen", "Cơ quan được ủy quyền"), ("co_quan_phoi_hop", "Cơ quan phối hợp")):
        value = one_line(record.get(key, ""))
        if value and not no_info(value):
            where.append(f"{label}: {value}")
    if not rows:
        if not raw:
            text = _no_info_line(url)
            return text, text, "\n\n".join(where + [_no_info_line(url)]), _online_text(online, url), online
        note = f"Bảng cách thức thực hiện trên Cổng (nguyên văn, chưa tách được thành từng dòng):\n\n{raw}"
        short = raw if len(raw) <= 600 else ""
        pointer = ("Chưa tách được {what} từ bảng của Cổng" + (f"; nguyên văn: {short}" if short else
                   "; xem nguyên văn ở mục Nơi nộp, cách thức") + f". Trang thủ tục: {url}")
        return (pointer.format(what="thời hạn"), pointer.format(what="mức phí, lệ phí"),
                "\n\n".join(where + [note]), _online_text(online, url), online)

    def grouped(render) -> str:  # type: ignore[no-untyped-def]
        groups: dict[str, list[str]] = {}
        for r in rows:
            groups.setdefault(render(r), []).append(r.channel)
        return _bullets(f"{channel_list(names)}: {value}" for value, names in groups.items())

    def raw_or(render):  # type: ignore[no-untyped-def]
        return lambda r: render(r) if r.sure else f"chưa tách được, nguyên văn trên Cổng: «{one_line(r.raw)}»"

    timing = "Theo Cổng Dịch vụ công quốc gia:\n\n" + grouped(raw_or(format_time))
    channels_seen = [r.channel for r in rows]
    if len(set(channels_seen)) < len(channels_seen):
        timing += "\n\nMột hình thức nộp có nhiều dòng (theo từng trường hợp): xem mô tả ở mục Nơi nộp, cách thức."
    if any(r.sure and r.description and not no_info(r.description) for r in rows):
        timing += "\n\nMô tả của từng hình thức nộp trên Cổng: xem mục Nơi nộp, cách thức."
    fees = "Theo Cổng Dịch vụ công quốc gia:\n\n" + grouped(raw_or(format_fee))
    descriptions: dict[str, list[str]] = {}
    for r in rows:
        if r.sure and r.description and not no_info(r.description):
            descriptions.setdefault(r.description, []).append(r.channel)
    if descriptions:
        where.append("Mô tả trên Cổng:\n\n" + _bullets(f"{channel_list(n)}: {d}" for d, n in descriptions.items()))
    return timing, fees, "\n\n".join(where), _online_text(online, url), online


def _online_text(online: bool, url: str) -> str:
    if online:
        return (f"Theo Cổng Dịch vụ công quốc gia, thủ tục này có hình thức nộp trực tuyến trên Cổng "
                f"({PORTAL_URL}). Trang thủ tục: {url}")
    return (f"Cổng Dịch vụ công quốc gia không ghi hình thức nộp trực tuyến cho thủ tục này; nộp theo các hình thức "
            f"ở mục Nơi nộp, cách thức. Trang thủ tục: {url}")


def _render_documents(text: str, url: str, stats: Stats, rel: str) -> str:
    groups = parse_documents(text)
    if not groups:
        if no_info(text) or re.fullmatch(r"KQ[.\-][\w.\-]+", one_line(text)):  # a stray result code
            return _no_info_line(url)
        if no_info(text):
            return _no_info_line(url)
        stats.documents_raw += 1
        stats.example("documents", rel)
        return f"Thành phần hồ sơ trên Cổng (nguyên văn):\n\n{clean(text)}"
    if documents_sure(groups):
        stats.documents_split += 1
    else:
        stats.documents_raw += 1
        stats.example("documents", rel)
    blocks = []
    for g in groups:
        lines = [d.line() for d in g.documents]
        if g.rest and g.rest.strip("-*– ."):
            lines.append(g.rest)
        if not lines and not g.title:
            continue
        block = (f"{g.title}\n\n" if g.title else "") + (_bullets(lines) if lines else "")
        blocks.append(block.strip())
    return "\n\n".join(blocks) or _no_info_line(url)


def _render_legal(text: str, url: str, stats: Stats, rel: str) -> str:
    if no_info(text) or no_info(text.replace(LAW_HEADER, "")):
        stats.no_legal += 1
        return _no_info_line(url)
    rows = parse_legal_basis(text)
    if rows:
        stats.legal_split += 1
        return _bullets(dict.fromkeys(r.line() for r in rows))
    stats.legal_raw += 1
    stats.example("legal", rel)
    body = text[len(LAW_HEADER):] if text.startswith(LAW_HEADER) else text
    return f"Căn cứ pháp lý trên Cổng (nguyên văn, chưa tách được tên và số hiệu văn bản):\n\n{clean(body)}"


def record_to_entry(record: dict[str, str], rel: str, source_date: dt.date | None = None, listed: ListRow | None = None,
                    stats: Stats | None = None) -> str:
    """The knowledge file text for one portal record (already checked to have a code and a name). `source_date` is
    the date of the portal data (its crawl or export), when known; the day of the import is never written."""
    stats = stats if stats is not None else Stats()
    record, fixed = repair_record(record)
    if fixed:
        stats.repaired += 1
    code = one_line(record["ma_thu_tuc"])
    name = one_line(record["ten_thu_tuc"])
    url = one_line(record.get("detail_url", "")) or PORTAL_URL
    field_name = one_line(record.get("linh_vuc", "")) or (listed.field if listed else "") or NO_INFO
    level = one_line(record.get("cap_thuc_hien", "")) or NO_INFO
    agency = _agency(record, listed, stats)
    timing, fees, where, online_text, online = _channel_sections(record, rel, url, agency, stats)
    summary = _summary(record, code, name, field_name, level, agency, listed)
    sections = _sections(record, rel, url, stats, timing, fees, where, online_text)
    published = "\n".join([agency, level] + [text for _, text in sections])
    if DISTRICT_RE.search(published):
        sections.append((LUU_Y, DISTRICT_NOTE))
        stats.district += 1

    meta = [
        ("id", entry_id(code)),
        ("loai", "thu-tuc"),
        ("tieu_de", yaml_value(name)),
        ("ma_thu_tuc", f"[{code}]"),
        ("linh_vuc", yaml_value(field_name)),
        ("cap_thuc_hien", yaml_value(level)),
        ("co_quan_thuc_hien", yaml_value(agency)),
    ]
    if online:
        meta.append(("nop_truc_tuyen", "dvcqg"))
    meta.append(("nguon", yaml_value(url)))
    if source_date is not None:
        meta.append(("ngay_du_lieu", source_date.isoformat()))
    meta.append(("nhap_tu", yaml_value(rel)))
    out = ["---", *(f"{k}: {v}" for k, v in meta), "---", "", markdown_safe(summary), ""]
    for heading, text in sections:
        out += [f"## {heading}", "", markdown_safe(text.strip()), ""]
    return "\n".join(out)


def _agency(record: dict[str, str], listed: ListRow | None, stats: Stats) -> str:
    """The body that carries the procedure out: the record's, else the official list's, else a phrase saying so."""
    for key in ("co_quan_thuc_hien", "co_quan_co_tham_quyen"):
        if not no_info(record.get(key, "")):
            return one_line(record[key]).rstrip(",;. ")
    if listed and listed.bodies:
        stats.bodies_from_lists += 1
        return listed.bodies
    stats.no_body += 1
    return "Cổng Dịch vụ công quốc gia không ghi cơ quan thực hiện"


def _channel_sections(record: dict[str, str], rel: str, url: str, agency: str,
                      stats: Stats) -> tuple[str, str, str, str, bool]:
    """Thời hạn, Phí, Nơi nộp and Nộp trực tuyến from the 'Cách thức thực hiện' table, and whether it is online;
    counts how well the table split."""
    how = record.get("cach_thuc_thuc_hien", "")
    rows = parse_channels(how)
    body = channel_body(how)
    if body is None and not no_info(how):
        body = how  # no table header: all of it is raw text
    if rows and all(r.sure for r in rows):
        stats.channels_split += 1
    elif rows:
        stats.channels_partly += 1
        stats.example("channels_partly", rel)
    elif body and body.strip():
        stats.channels_raw += 1
        stats.example("channels", rel)
    return _render_channels(rows, body, url, record, agency)


def _summary(record: dict[str, str], code: str, name: str, field_name: str, level: str, agency: str,
             listed: ListRow | None) -> str:
    """The entry's opening paragraph: what, for whom, by whom, and where the text comes from."""
    audience = one_line(record.get("doi_tuong_thuc_hien", ""))
    subject = name if name.lower().startswith("thủ tục") else f"Thủ tục “{name}”"
    summary = f"{subject} thuộc lĩnh vực {field_name}, thực hiện ở {level.lower()}"
    summary += f", dành cho: {audience}." if audience and not no_info(audience) else "."
    summary += f" Cơ quan thực hiện: {agency}."
    origin = [f"mã thủ tục {code}"]
    decision = one_line(record.get("so_quyet_dinh", ""))
    if decision and not no_info(decision):
        origin.append(f"quyết định công bố số {decision}")
    if listed and listed.issuer:
        origin.append(f"cơ quan ban hành: {listed.issuer}")
    return summary + f" Thông tin nhập từ Cổng Dịch vụ công quốc gia ({'; '.join(origin)})."


def _sections(record: dict[str, str], rel: str, url: str, stats: Stats, timing: str, fees: str, where: str,
              online_text: str) -> list[tuple[str, str]]:
    """The entry's sections in the procedure template's order (Lưu ý, if needed, comes after)."""
    sections: list[tuple[str, str]] = []
    conditions = clean_conditions(record.get("yeu_cau_dieu_kien", ""))
    if conditions and not no_info(conditions):
        sections.append((DOI_TUONG, conditions))
    sections.append((HO_SO, _render_documents(record.get("thanh_phan_ho_so", ""), url, stats, rel)))
    steps = clean(record.get("trinh_tu_thuc_hien", ""))
    sections.append((TRINH_TU, steps if steps and not no_info(steps) else _no_info_line(url)))
    sections += [(THOI_HAN, timing), (PHI, fees), (NOI_NOP, where), (TRUC_TUYEN, online_text)]
    sections.append((CAN_CU, _render_legal(record.get("can_cu_phap_ly", ""), url, stats, rel)))
    results, result_note = parse_results(record.get("ket_qua_xu_ly", ""))
    if results or result_note:
        text = _bullets(results)
        if result_note:
            text = (text + "\n\n" if text else "") + f"Mô tả trên Cổng: {result_note}"
        sections.append((KET_QUA, text))
    return sections


# --------------------------------------------------------------------------- import


@dataclass
class ImportReport:
    """What an import did: counts, the records skipped and why, and how well the tables split."""

    read: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    bad_records: list[str] = field(default_factory=list)
    missing_from_records: int = 0
    list_problems: list[str] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    seconds: float = 0.0

    @property
    def bad(self) -> int:
        return len(self.bad_records)

    @property
    def entries(self) -> int:
        return self.written + self.unchanged

    def summary(self) -> str:
        s = self.stats
        lines = [
            f"Đã đọc {self.read} bản ghi: {self.written} mục ghi mới hoặc cập nhật, {self.unchanged} không đổi, "
            f"{self.removed} mục cũ đã xóa, {self.bad} bản ghi lỗi bị bỏ qua ({self.seconds:.1f} giây).",
            f"Cách thức thực hiện: {s.channels_split} tách đủ, {s.channels_partly} tách một phần, "
            f"{s.channels_raw} giữ nguyên văn. Thành phần hồ sơ: {s.documents_split} tách đủ, "
            f"{s.documents_raw} còn phần nguyên văn. Căn cứ pháp lý: {s.legal_split} tách đủ, "
            f"{s.legal_raw} giữ nguyên văn, {s.no_legal} không có thông tin.",
        ]
        if s.repaired:
            lines.append(f"{s.repaired} bản ghi bị lệch trường khi thu thập đã được sửa theo raw_text.")
        if s.district:
            lines.append(f"{s.district} bản ghi còn nhắc cơ quan cấp huyện: đã thêm lưu ý về chính quyền hai cấp.")
        if s.bodies_from_lists or s.no_body:
            lines.append(f"Cơ quan thực hiện lấy từ danh sách XLSX: {s.bodies_from_lists}; "
                         f"không có ở đâu: {s.no_body}.")
        if self.missing_from_records:
            lines.append(f"{self.missing_from_records} mã có trong danh sách XLSX nhưng không có bản ghi.")
        for kind, label in (("channels_partly", "cách thức tách một phần"), ("channels", "cách thức nguyên văn"),
                            ("documents", "hồ sơ còn phần nguyên văn"), ("legal", "căn cứ pháp lý nguyên văn")):
            if s.raw_examples.get(kind):
                lines.append(f"Ví dụ {label}: {', '.join(s.raw_examples[kind])}")
        lines += self.list_problems
        lines += self.bad_records
        return "\n".join(lines)


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def _write_if_changed(path: Path, text: str) -> bool:
    """Write `text` unless the file already holds it, through a temporary file and os.replace."""
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; entries are read by the bot and the index builder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _generated(path: Path) -> bool:
    """Whether a file in the destination was written by this importer (it names its source record)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    front = head.split(b"\n---", 1)[0]
    return head.startswith(b"---") and b"\nnhap_tu:" in front


def _read_record(path: Path, rel: str) -> tuple[dict[str, str] | None, str]:
    """A record file's record, checked fit to import, or None and why it is not."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        return None, "tệp không phải UTF-8"
    except json.JSONDecodeError as e:
        return None, f"JSON hỏng (dòng {e.lineno}, cột {e.colno}: {e.msg})"
    except OSError as e:
        return None, f"không đọc được tệp ({e.strerror})"
    return check_record(data, rel)


def import_portal(src: Path, dest: Path, lists: Path | None = None, source_date: dt.date | None = None,
                  progress: bool = False) -> ImportReport:
    """Turn every `<agency>/<code>.json` record under `src` into `dest/thu-tuc/tthc-<code>.md`.

    Bad records are reported and skipped (their earlier entry, if any, is kept). Files are written only
    when their text changed; entries whose record disappeared are removed.
    """
    started = time.perf_counter()
    src, dest = Path(src), Path(dest)
    report = ImportReport()
    listed: dict[str, ListRow] = {}
    if lists is not None:
        listed, report.list_problems = read_lists(Path(lists))
    files = sorted(p for p in src.glob("*/*.json") if not p.parent.name.startswith("."))
    out_dir = dest / FOLDER
    produced: set[str] = set()
    keep: set[str] = set()  # entries of records that are bad this time: left as they were
    seen: dict[str, str] = {}
    stems = {path.stem for path in files}
    iterator: Iterable[Path] = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc="Nhập thủ tục", unit=" bản ghi")
    for path in iterator:
        rel = path.relative_to(src).as_posix()
        report.read += 1
        stem_id = entry_id(path.stem) if CODE_RE.match(path.stem) else ""

        def bad(reason: str, rel: str = rel, stem_id: str = stem_id) -> None:
            report.bad_records.append(f"{rel}: {reason}")
            if stem_id:
                keep.add(stem_id)

        record, reason = _read_record(path, rel)
        if record is None:
            bad(reason)
            continue
        code = one_line(record["ma_thu_tuc"])
        if code in seen:
            bad(f"mã thủ tục {code} trùng với {seen[code]}")
            continue
        seen[code] = rel
        ident = entry_id(code)
        text = record_to_entry(record, rel, source_date, listed.get(code), report.stats)
        produced.add(ident)
        if _write_if_changed(out_dir / f"{ident}.md", text):
            report.written += 1
        else:
            report.unchanged += 1
    if out_dir.is_dir():
        for old in sorted(out_dir.glob(f"{ID_PREFIX}*.md")):
            if old.stem not in produced and old.stem not in keep and _generated(old):
                old.unlink()
                report.removed += 1
    report.missing_from_records = sum(1 for code in listed if code not in seen and code not in stems)
    report.seconds = time.perf_counter() - started
    return report
