"""Knowledge files: parse Markdown entries with front matter, validate them, and read the shared files."""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KINDS = {"thu-tuc": "procedure", "chu-de": "topic", "ke-hoach": "plan", "hoi-dap": "faq"}
FOLDERS = {"procedure": "thu-tuc", "topic": "chu-de", "plan": "ke-hoach", "faq": "hoi-dap"}
SKIP_DIRS = {"mau"}
DICTIONARY_FILE = "tu-dien.txt"
LINKS_FILE = "lien-ket.yaml"
STALE_AFTER_DAYS = 365

# Section headings of a procedure, in the order a card shows them.
HO_SO = "Thành phần hồ sơ"
TRINH_TU = "Trình tự thực hiện"
THOI_HAN = "Thời hạn giải quyết"
PHI = "Phí, lệ phí"
NOI_NOP = "Nơi nộp, cách thức"
TRUC_TUYEN = "Nộp trực tuyến"
CAN_CU = "Căn cứ pháp lý"
DOI_TUONG = "Đối tượng, điều kiện"
KET_QUA = "Kết quả"
LUU_Y = "Lưu ý"
SUMMARY = "Tóm tắt"
PROCEDURE_REQUIRED = (HO_SO, TRINH_TU, THOI_HAN, PHI, NOI_NOP, TRUC_TUYEN, CAN_CU)
PROCEDURE_OPTIONAL = (DOI_TUONG, KET_QUA, LUU_Y)

# Field types: text, list, date, url, link (URL or link id), codes, ids.
FIELDS: dict[str, dict[str, tuple[bool, str]]] = {
    "procedure": {
        "tieu_de": (True, "text"),
        "ma_thu_tuc": (False, "codes"),
        "linh_vuc": (True, "text"),
        "cap_thuc_hien": (True, "text"),
        "co_quan_thuc_hien": (True, "text"),
        "nop_truc_tuyen": (False, "link"),
        "nguon": (True, "url"),
        "ngay_kiem_tra": (True, "date"),  # not for imported records: nobody checked them, they carry ngay_du_lieu
        "tu_khoa": (False, "list"),
        "nhap_tu": (False, "text"),
        "ngay_du_lieu": (False, "date"),  # an imported record: the date of the portal data it came from, if known
    },
    "topic": {
        "tieu_de": (True, "text"),
        "nguon": (False, "url"),
        "ngay_cap_nhat": (False, "date"),
        "tu_khoa": (False, "list"),
    },
    "plan": {
        "tieu_de": (True, "text"),
        "so_hieu": (False, "text"),
        "ngay_ban_hanh": (True, "date_or_year"),  # some plans are known only by their year
        "co_quan_ban_hanh": (True, "text"),
        "dia_ban": (False, "text"),
        "nguon": (False, "url"),
        "tu_khoa": (False, "list"),
    },
    "faq": {
        "cau_hoi": (True, "list"),
        "lien_quan": (True, "ids"),
        "ngay_kiem_tra": (False, "date"),
        "tu_khoa": (False, "list"),
    },
}
COMMON_FIELDS = ("id", "loai")

ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
CODE_RE = re.compile(r"^\d+\.\d{6}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$")
# A district-level body named as the place to go: none exist after 1 July 2025.
DISTRICT_RE = re.compile(
    r"\b(cấp huyện|ubnd (huyện|quận|thị xã)|ủy ban nhân dân (huyện|quận|thị xã)|phòng tư pháp|"
    r"công an (huyện|quận|thị xã)|chi cục thuế (huyện|quận)|văn phòng đăng ký đất đai (huyện|quận))\b",
    re.IGNORECASE,
)
# Words that mark a sentence as history ("no longer at district level"), not as today's place.
PAST_RE = re.compile(r"không còn|trước đây|trước ngày|trước 0?1/0?7/2025|đã chuyển|bãi bỏ|thay cho|nay là", re.I)


@dataclass(frozen=True)
class Problem:
    """One mistake in a knowledge file: where it is, what is wrong, how to fix it."""

    path: str
    line: int
    message: str
    fix: str = ""
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        label = "cảnh báo: " if self.warning else ""
        return f"{where}: {label}{self.message}" + (f" — {self.fix}" if self.fix else "")


# A front matter as read: every value text (never a number or a boolean), or a list of texts.
Meta = dict[str, str | list[str]]


@dataclass(frozen=True)
class Section:
    """A `## ` section of an entry: its heading, its text, the line the heading is on."""

    heading: str
    text: str
    line: int


@dataclass(frozen=True)
class Entry:
    """One knowledge entry (procedure, topic, plan or FAQ)."""

    id: str
    kind: str
    path: str
    meta: Meta
    summary: str
    sections: tuple[Section, ...]
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    def text(self, key: str) -> str:
        """A text field, or '' when absent."""
        value = self.meta.get(key, "")
        return value if isinstance(value, str) else ", ".join(value)

    def values(self, key: str) -> list[str]:
        """A list field, or [] when absent."""
        value = self.meta.get(key, [])
        return [value] if isinstance(value, str) else list(value)

    @property
    def title(self) -> str:
        """The title shown to citizens: tieu_de, or an FAQ's first question."""
        return self.text("tieu_de") or (self.values("cau_hoi") or [self.id])[0]

    @property
    def codes(self) -> list[str]:
        """Portal procedure codes (ma_thu_tuc)."""
        return self.values("ma_thu_tuc")

    @property
    def date(self) -> str:
        """The date to cite: checked, issued or updated."""
        if self.imported:  # the portal data's date (when the import was told it), never the day of the import
            return self.text("ngay_du_lieu")
        return self.text("ngay_kiem_tra") or self.text("ngay_ban_hanh") or self.text("ngay_cap_nhat")

    @property
    def source_url(self) -> str:
        """The official page the entry was checked against."""
        return self.text("nguon")

    def section(self, heading: str) -> Section | None:
        """The section with this heading, if present."""
        for s in self.sections:
            if s.heading == heading:
                return s
        return None

    @property
    def topics(self) -> list[str]:
        """Catalogue ids and procedure codes the entry is about (itself, its codes, an FAQ's links)."""
        out = [self.id] + self.codes + self.values("lien_quan")
        return list(dict.fromkeys(out))

    @property
    def imported(self) -> bool:
        """Generated from the national portal's records (`nhap_tu`), not written by staff."""
        return "nhap_tu" in self.meta

    @property
    def questions(self) -> list[str]:
        """An FAQ's wordings of its question (cau_hoi)."""
        return self.values("cau_hoi")

    @property
    def related(self) -> list[str]:
        """The entries an FAQ is about (lien_quan)."""
        return self.values("lien_quan")


@dataclass(frozen=True)
class Link:
    """An official link answers can point to."""

    id: str
    title: str
    url: str
    default: bool = False


@dataclass(frozen=True)
class Hotline:
    """The official hotline offered when the bot cannot answer."""

    name: str
    number: str
    url: str


@dataclass(frozen=True)
class Listing:
    """A procedure known only by name (`danh-muc.tsv`, from `index_builder.py --import-names`): the bot can say that
    it exists, who handles it and where to look, and nothing more."""

    code: str
    name: str
    agency: str


LISTINGS_FILE = "danh-muc.tsv"
LISTINGS_HEADER = ("ma_thu_tuc", "ten_thu_tuc", "co_quan")


def parse_listings(path: Path, rel: str) -> tuple[list[Listing], list[Problem]]:
    """Read a names file written by the importer; a malformed line is reported with its number."""
    listings, problems = [], []
    with path.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if n == 1 and tuple(row) == LISTINGS_HEADER:
                continue
            if len(row) != 3 or not CODE_RE.match(row[0]) or not row[1].strip():
                problems.append(Problem(rel, n, "dòng danh mục cần 3 cột: mã thủ tục, tên, cơ quan",
                                        "chạy lại `index_builder.py --import-names`"))
                continue
            listings.append(Listing(row[0], row[1].strip(), row[2].strip()))
    return listings, problems


@dataclass
class KnowledgeBase:
    """Every entry, the synonym dictionary and the official links, with the problems found."""

    entries: dict[str, Entry] = field(default_factory=dict)
    synonyms: list[tuple[str, list[str]]] = field(default_factory=list)
    links: dict[str, Link] = field(default_factory=dict)
    hotline: Hotline | None = None
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    shadowed: int = 0  # imported entries left out because a curated entry names the same code
    listings: list[Listing] = field(default_factory=list)  # procedures known by name only

    @property
    def errors(self) -> list[Problem]:
        """Problems that stop a build."""
        return [p for p in self.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        """Problems reported but not fatal (stale dates)."""
        return [p for p in self.problems if p.warning]

    def link_for(self, value: str) -> Link | None:
        """Resolve a `nop_truc_tuyen` value: a link id or a URL."""
        if value in self.links:
            return self.links[value]
        if URL_RE.match(value):
            return Link(id="", title="Nộp trực tuyến", url=value)
        return None

    @property
    def default_links(self) -> list[Link]:
        """Links every answer may fall back to."""
        return [link for link in self.links.values() if link.default]


# --------------------------------------------------------------------------- parsing


class _Reject(Exception):
    def __init__(self, line: int, message: str, fix: str = ""):
        super().__init__(message)
        self.line, self.message, self.fix = line, message, fix


def _node_value(node: yaml.Node, key: str) -> str | list[str]:
    if isinstance(node, yaml.ScalarNode):
        return str(node.value).strip()
    if isinstance(node, yaml.SequenceNode):
        items = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                raise _Reject(item.start_mark.line + 1, f"'{key}' chỉ chứa các dòng chữ", "bỏ cấu trúc lồng nhau")
            items.append(str(item.value).strip())
        return items
    raise _Reject(node.start_mark.line + 1, f"'{key}' không được là một bảng con", "viết giá trị trên cùng một dòng")


def parse_front_matter(text: str, first_line: int = 1) -> tuple[Meta, dict[str, int]]:
    """Parse YAML front matter keeping every value as text, with each key's line number."""
    try:
        node = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = first_line + (mark.line if mark else 0)
        reason = getattr(e, "problem", None) or str(e)
        raise _Reject(line, f"phần khai báo sai cú pháp ({reason})",
                      "mỗi dòng dạng 'ten_truong: giá trị'; đặt giá trị có dấu ':' trong nháy kép") from None
    if node is None:
        return {}, {}
    if not isinstance(node, yaml.MappingNode):
        raise _Reject(first_line, "phần khai báo phải gồm các dòng 'ten_truong: giá trị'")
    meta: Meta = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value).strip()
        line = first_line + key_node.start_mark.line
        if key in meta:
            raise _Reject(line, f"trường '{key}' bị khai báo hai lần", f"xóa một dòng (dòng đầu ở {lines[key]})")
        try:
            meta[key] = _node_value(value_node, key)
        except _Reject as r:
            raise _Reject(first_line + r.line - 1, r.message, r.fix) from None
        lines[key] = line
    return meta, lines


def split_file(text: str) -> tuple[str, int, list[str], int]:
    """Split a knowledge file into front matter text (and its first line) and body lines (and theirs)."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise _Reject(1, "tệp phải bắt đầu bằng dòng '---' của phần khai báo", "xem tệp mẫu trong knowledge/mau/")
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "\n".join(lines[1:i]), 2, lines[i + 1 :], i + 2
    raise _Reject(1, "phần khai báo không có dòng '---' đóng lại", "thêm dòng '---' sau trường cuối cùng")


def parse_body(lines: list[str], first_line: int) -> tuple[str, list[Section], list[Problem]]:
    """Split the body into the summary (before any heading) and `## ` sections."""
    summary: list[str] = []
    sections: list[tuple[str, int, list[str]]] = []
    problems: list[Problem] = []
    for offset, raw in enumerate(lines):
        line = raw.rstrip()
        number = first_line + offset
        if line.startswith("# "):
            problems.append(Problem("", number, "tiêu đề một dấu '#' không được dùng", "dùng '## ' cho tiêu đề mục"))
            continue
        if line.startswith("## "):
            sections.append((line[3:].strip(), number, []))
            continue
        (sections[-1][2] if sections else summary).append(raw)
    out = [Section(h, "\n".join(body).strip(), n) for h, n, body in sections]
    return "\n".join(summary).strip(), out, problems


def _check_field(kind: str, key: str, value: str | list[str], line: int) -> list[tuple[int, str, str]]:
    required, ftype = FIELDS[kind][key]
    bad: list[tuple[int, str, str]] = []
    values = value if isinstance(value, list) else [value]
    if ftype in ("list", "codes", "ids"):
        if any(not v for v in values):
            bad.append((line, f"'{key}' có phần tử trống", "xóa phần tử trống"))
    elif isinstance(value, list):
        bad.append((line, f"'{key}' phải là một giá trị, không phải danh sách", "viết trên cùng một dòng"))
        return bad
    if required and not any(values):
        bad.append((line, f"'{key}' đang để trống", "điền giá trị"))
        return bad
    for v in values:
        if not v:
            continue
        if ftype == "date_or_year" and re.fullmatch(r"(19|20)\d\d", v):
            continue
        if ftype in ("date", "date_or_year"):
            if not DATE_RE.match(v):
                bad.append((line, f"'{key}' phải là ngày dạng 2026-01-31, đang là '{v}'", "viết năm-tháng-ngày"))
            else:
                try:
                    dt.date.fromisoformat(v)
                except ValueError:
                    bad.append((line, f"'{key}' không phải ngày có thật: '{v}'", "kiểm tra lại ngày, tháng"))
        elif ftype == "url" and not URL_RE.match(v):
            bad.append((line, f"'{key}' phải là đường dẫn bắt đầu bằng https://, đang là '{v}'", "dán đường dẫn đầy đủ"))
        elif ftype == "codes" and not CODE_RE.match(v):
            bad.append((line, f"mã thủ tục '{v}' không đúng dạng", "mã có dạng 1.001193 (xem trên Cổng Dịch vụ công)"))
        elif ftype == "ids" and not ID_RE.match(v):
            bad.append((line, f"'{v}' không phải id hợp lệ", "id gồm chữ thường không dấu, số và dấu '-'"))
    return bad


def _district_problems(entry: Entry, rel: str) -> list[Problem]:
    out = []
    for key in ("cap_thuc_hien", "co_quan_thuc_hien"):
        value = entry.text(key)
        if DISTRICT_RE.search(value) and not PAST_RE.search(value):
            out.append(Problem(rel, entry.lines.get(key, 1), f"'{key}' nêu cơ quan cấp huyện ('{value}')",
                               "từ 01/7/2025 chỉ còn cấp tỉnh và cấp xã: ghi cơ quan cấp xã hoặc cấp tỉnh"))
    where = entry.section(NOI_NOP)
    if where:
        for n, line in enumerate(where.text.split("\n"), where.line + 2):
            for sentence in re.split(r"(?<=[.;])\s+", line):
                if DISTRICT_RE.search(sentence) and not PAST_RE.search(sentence):
                    out.append(Problem(rel, n, "mục 'Nơi nộp, cách thức' nêu cơ quan cấp huyện là nơi nộp",
                                       "từ 01/7/2025 không còn cấp huyện: ghi nơi nộp cấp xã hoặc cấp tỉnh"))
    return out


UTF8_FIX = "mở tệp và lưu lại với mã hóa UTF-8 (trong Notepad: Lưu thành… → Mã hóa: UTF-8)"


def decode_utf8(raw: bytes, rel: str) -> tuple[str, Problem | None]:
    """The text of a knowledge file, or a problem saying which encoding it seems to be in and where."""
    for bom, name in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                      (b"\xfe\xff", "UTF-16")):
        if raw.startswith(bom):
            return "", Problem(rel, 1, f"tệp được lưu bằng mã hóa {name}, không phải UTF-8", UTF8_FIX)
    if raw.count(b"\x00") * 4 > len(raw):  # every other byte zero: UTF-16 text of mostly Latin letters
        return "", Problem(rel, 1, "tệp có vẻ được lưu bằng mã hóa UTF-16 (không có BOM), không phải UTF-8", UTF8_FIX)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        return "", Problem(rel, line, f"tệp không phải UTF-8 (byte 0x{raw[e.start]:02X}; có thể là Windows-1258 "
                                      "hoặc Latin-1)", UTF8_FIX)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        return "", Problem(rel, line, "tệp chứa ký tự NUL (byte 0x00)", "xóa ký tự đó rồi lưu lại với mã hóa UTF-8")
    return text, None


def _read_entry_text(path: Path, rel: str) -> tuple[str, Problem | None]:
    """A knowledge file's text with '\\n' line ends, or the problem that stops it being read at all."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "", Problem(rel, 0, "tệp đã bị xóa hoặc đổi tên trong lúc đọc", "chạy lại khi đã sửa xong các tệp")
    except OSError as e:
        return "", Problem(rel, 0, f"không đọc được tệp ({e.strerror})", "kiểm tra quyền đọc tệp")
    text, problem = decode_utf8(raw, rel)
    if problem:
        return "", problem
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return "", Problem(rel, 1, "tệp trống", "điền nội dung theo tệp mẫu trong knowledge/mau/, hoặc xóa tệp")
    return text, None


def _check_identity(path: Path, rel: str, meta: Meta, lines: dict[str, int]) -> tuple[str | None, str, list[Problem]]:
    """The kind and id a front matter declares (kind None when the entry cannot be read as one), with the problems
    of the common fields, the id, the kind and the folder."""
    out: list[Problem] = []
    for key in COMMON_FIELDS:
        if key not in meta:
            out.append(Problem(rel, 1, f"thiếu trường '{key}'", f"thêm dòng '{key}: ...' vào phần khai báo"))
    loai = meta.get("loai", "")
    entry_id = meta.get("id", "")
    if not isinstance(loai, str) or not isinstance(entry_id, str):
        out.append(Problem(rel, lines.get("loai", 1), "'id' và 'loai' phải là một giá trị", "viết trên cùng một dòng"))
        return None, "", out
    if "loai" in meta and loai not in KINDS:
        out.append(Problem(rel, lines["loai"], f"'loai' không hợp lệ: '{loai}'", f"dùng một trong: {', '.join(KINDS)}"))
    if "id" in meta:
        if not ID_RE.match(entry_id):
            out.append(Problem(rel, lines["id"], f"id '{entry_id}' không hợp lệ",
                               "id gồm chữ thường không dấu, số và dấu '-'"))
        elif path.stem != entry_id:
            out.append(Problem(rel, lines["id"], f"tên tệp phải là '{entry_id}.md' cho trùng id",
                               "đổi tên tệp hoặc sửa id"))
    if loai not in KINDS or not entry_id:
        return None, entry_id, out
    kind = KINDS[loai]
    folder = FOLDERS[kind]
    if path.parent.name != folder:
        out.append(Problem(rel, lines["loai"], f"mục loại '{loai}' phải nằm trong thư mục '{folder}/'",
                           f"chuyển tệp vào {folder}/"))
    return kind, entry_id, out


def _check_fields(kind: str, rel: str, meta: Meta, lines: dict[str, int]) -> list[Problem]:
    """The problems of a kind's own fields: unknown ones (with the closest known name), bad values, missing ones."""
    out: list[Problem] = []
    loai = meta["loai"]
    schema = FIELDS[kind]
    for key, value in meta.items():
        if key in COMMON_FIELDS:
            continue
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema) + list(COMMON_FIELDS), n=1)
            fix = f"có phải ý bạn là '{close[0]}'?" if close else f"các trường dùng được: {', '.join(schema)}"
            out.append(Problem(rel, lines[key], f"trường '{key}' không dùng cho loại '{loai}'", fix))
            continue
        for line, message, fix in _check_field(kind, key, value, lines[key]):
            out.append(Problem(rel, line, message, fix))
    for key, (required, _) in schema.items():
        if key == "ngay_kiem_tra" and "nhap_tu" in meta:
            continue  # an imported record was not checked by staff: it carries the data's own date, if any
        if required and key not in meta:
            out.append(Problem(rel, 1, f"thiếu trường '{key}'",
                               f"thêm dòng '{key}: ...' vào phần khai báo (xem knowledge/mau/{loai}.md)"))
    return out


def _check_sections(kind: str, rel: str, summary: str, sections: list[Section], body_line: int) -> list[Problem]:
    """The problems of a body: repeated or empty sections, a procedure's headings, an FAQ's answer, the summary."""
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for s in sections:
        if s.heading in seen:
            out.append(Problem(rel, s.line, f"mục '## {s.heading}' xuất hiện hai lần",
                               f"gộp với mục ở dòng {seen[s.heading]}"))
        seen.setdefault(s.heading, s.line)
        if not s.text:
            out.append(Problem(rel, s.line, f"mục '## {s.heading}' không có nội dung",
                               "viết nội dung hoặc xóa tiêu đề mục"))
    if kind == "procedure":
        allowed = PROCEDURE_REQUIRED + PROCEDURE_OPTIONAL
        for s in sections:
            if s.heading not in allowed:
                close = difflib.get_close_matches(s.heading, allowed, n=1, cutoff=0.5)
                fix = f"có phải ý bạn là '## {close[0]}'?" if close else "dùng các tiêu đề trong knowledge/mau/thu-tuc.md"
                out.append(Problem(rel, s.line, f"tiêu đề mục '## {s.heading}' không có trong danh sách cố định", fix))
        for heading in PROCEDURE_REQUIRED:
            if heading not in seen:
                out.append(Problem(rel, body_line, f"thiếu mục '## {heading}'",
                                   "thêm tiêu đề mục đó (đúng chính tả) và nội dung"))
    if kind == "faq":
        if sections:
            out.append(Problem(rel, sections[0].line, "mục hỏi đáp không dùng tiêu đề '## '",
                               "viết câu trả lời thành đoạn văn liền"))
        if not summary:
            out.append(Problem(rel, body_line, "mục hỏi đáp chưa có câu trả lời", "viết câu trả lời sau dòng '---'"))
    elif not summary:
        out.append(Problem(rel, body_line, "thiếu đoạn tóm tắt trước tiêu đề mục đầu tiên",
                           "viết 1–3 câu tóm tắt ngay sau dòng '---'"))
    return out


# A fact that applies only until a date (a fee reduction, a transition period): `{den_het: 2026-12-31}` at the end of
# its paragraph or list item, or alone on the first line of a section (the whole section). Answers show the date
# ("áp dụng đến hết 31/12/2026") and, once it has passed, leave the fact out; `--check` warns LAPSE_WARNING_DAYS days
# before and refuses the base after it, naming the file and line.
UNTIL = re.compile(r"\{\s*den_het\s*:\s*([^}]*?)\s*\}")
LAPSE_WARNING_DAYS = 30
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")


def until_phrase(end: dt.date) -> str:
    """How answers say until when a fact applies."""
    return f"áp dụng đến hết {end:%d/%m/%Y}"


def _until_date(value: str) -> dt.date | None:
    if not DATE_RE.match(value.strip()):
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        return None


def _blocks(lines: list[str]) -> list[list[int]]:
    """Indices of the lines of each paragraph or list item (a wrapped line belongs to the one above it)."""
    blocks: list[list[int]] = []
    current: list[int] = []
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith(("#", "|")) or _ITEM.match(line):
            if current:
                blocks.append(current)
            current = []
            if not line.strip():
                continue
        current.append(i)
    if current:
        blocks.append(current)
    return blocks


def apply_until(text: str, today: dt.date) -> str:
    """A section's (or summary's) text as of `today`: a fact marked `{den_het: …}` says until when it applies, or is
    left out once that date has passed (the whole section, when the marker stands alone on its first line)."""
    if "den_het" not in text:
        return text
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    whole = UNTIL.fullmatch(lines[first].strip()) if first is not None else None
    if first is not None and whole:  # the whole section applies until a date
        end = _until_date(whole.group(1))
        if end is not None and end < today:
            return ""
        lines[first: first + 1] = [f"Nội dung dưới đây {until_phrase(end)}.", ""] if end else []
    drop: set[int] = set()
    for block in _blocks(lines):
        last = block[-1]
        found = UNTIL.search(lines[last])
        end = _until_date(found.group(1)) if found else None
        if end is not None and end < today:
            drop.update(block)
            continue
        for i in block:  # a misplaced or malformed marker (the check reports it) is only removed
            if i != last or end is None:
                lines[i] = UNTIL.sub("", lines[i]).rstrip()
        if found and end is not None:
            head = lines[last][:found.start()].rstrip().rstrip(".;,")
            lines[last] = f"{head}, {until_phrase(end)}." + lines[last][found.end():].rstrip()
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def _until_problems(rel: str, body: list[str], first_line: int, today: dt.date) -> list[Problem]:
    """Every `{den_het: …}` marker: a date, at the end of its paragraph or item, not past (and a warning when near)."""
    out: list[Problem] = []
    if not any("den_het" in line for line in body):
        return out
    ends = {block[-1] for block in _blocks(body)}
    previous = ""  # the last non-empty line before this one
    for i, line in enumerate(body):
        number = first_line + i
        alone = UNTIL.fullmatch(line.strip()) is not None and (not previous or previous.startswith("## "))
        if line.strip():
            previous = line.strip()
        for found in UNTIL.finditer(line):
            end = _until_date(found.group(1))
            if end is None:
                out.append(Problem(rel, number, f"'den_het' phải là ngày dạng 2026-12-31, đang là '{found.group(1)}'",
                                   "viết ngày cuối cùng còn áp dụng theo dạng năm-tháng-ngày"))
                continue
            if not alone and (i not in ends or line[found.end():].strip()):
                out.append(Problem(rel, number, "dấu {den_het: …} phải nằm cuối đoạn hoặc cuối dòng gạch đầu dòng",
                                   "tách điều có thời hạn thành một dòng gạch đầu dòng riêng, đặt dấu ở cuối"))
            days = (end - today).days
            if days < 0:
                out.append(Problem(rel, number, f"điều này chỉ áp dụng đến hết {end:%d/%m/%Y}, nay đã hết hạn "
                                                "(câu trả lời không còn nêu nó)",
                                   "xoá dòng này, hoặc cập nhật theo văn bản mới rồi sửa ngày"))
            elif days <= LAPSE_WARNING_DAYS:
                out.append(Problem(rel, number, f"điều này chỉ áp dụng đến hết {end:%d/%m/%Y}, còn {days} ngày",
                                   "kiểm tra đã có văn bản gia hạn hay thay thế chưa; sau ngày đó hãy xoá hoặc "
                                   "cập nhật dòng này", warning=True))
    return out


def _check_date(entry: Entry, rel: str, today: dt.date) -> list[Problem]:
    """A procedure checked more than a year ago (a warning), or on a date still to come."""
    checked = entry.text("ngay_kiem_tra")
    if entry.kind != "procedure" or not DATE_RE.match(checked):
        return []
    try:
        age = (today - dt.date.fromisoformat(checked)).days
    except ValueError:
        age = 0
    line = entry.lines["ngay_kiem_tra"]
    if age > STALE_AFTER_DAYS:
        return [Problem(rel, line, f"thông tin kiểm tra lần cuối ngày {checked}, đã hơn một năm",
                        "đối chiếu lại với trang chính thức rồi cập nhật 'ngay_kiem_tra'", warning=True)]
    if age < 0:
        return [Problem(rel, line, f"'ngay_kiem_tra' ({checked}) là ngày trong tương lai", "ghi ngày đã kiểm tra")]
    return []


def parse_entry(path: Path, rel: str, today: dt.date) -> tuple[Entry | None, list[Problem]]:
    """Parse and check one knowledge file on its own; cross-file checks happen in load_knowledge."""
    text, problem = _read_entry_text(path, rel)
    if problem:
        return None, [problem]
    try:
        front, front_line, body, body_line = split_file(text)
        meta, lines = parse_front_matter(front, front_line)
    except _Reject as r:
        return None, [Problem(rel, r.line, r.message, r.fix)]
    kind, entry_id, problems = _check_identity(path, rel, meta, lines)
    if kind is None:
        return None, problems
    problems += _check_fields(kind, rel, meta, lines)
    summary, sections, body_problems = parse_body(body, body_line)
    problems.extend(Problem(rel, p.line, p.message, p.fix) for p in body_problems)
    problems += _until_problems(rel, body, body_line, today)
    problems += _check_sections(kind, rel, summary, sections, body_line)
    entry = Entry(entry_id, kind, rel, meta, summary, tuple(sections), lines)
    problems += _check_date(entry, rel, today)
    if kind == "procedure" and "nhap_tu" not in meta:  # imported official text is kept as published
        problems.extend(_district_problems(entry, rel))
    return entry, problems


def parse_synonyms(path: Path, rel: str) -> tuple[list[tuple[str, list[str]]], list[Problem]]:
    """Read the dictionary: `term = expansion; other expansion`, one a line, '#' for comments."""
    out: list[tuple[str, list[str]]] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").lstrip("\ufeff").splitlines()
    except (UnicodeDecodeError, OSError) as e:
        return [], [Problem(rel, 0, f"không đọc được tệp ({e})", "lưu lại tệp với mã hóa UTF-8")]
    from .text import fold, nfc

    for n, raw in enumerate(lines, 1):
        line = nfc(raw.strip())
        if not line or line.startswith("#"):
            continue
        term, eq, rest = line.partition("=")
        expansions = [e.strip() for e in rest.split(";") if e.strip()]
        if not eq or not term.strip() or not expansions:
            problems.append(Problem(rel, n, "dòng phải có dạng 'từ = cách gọi đầy đủ; cách gọi khác'",
                                    "thêm dấu '=' và ít nhất một cách gọi"))
            continue
        key = fold(term.strip())
        if key in seen:
            problems.append(Problem(rel, n, f"'{term.strip()}' đã có ở dòng {seen[key]}", "gộp hai dòng làm một"))
            continue
        seen[key] = n
        out.append((term.strip(), expansions))
    return out, problems


def parse_links(path: Path, rel: str) -> tuple[dict[str, Link], Hotline | None, list[Problem]]:
    """Read the official links file and the hotline."""
    problems: list[Problem] = []
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.BaseLoader)
        data = yaml.load(text, Loader=yaml.BaseLoader)
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        mark = getattr(e, "problem_mark", None)
        return {}, None, [Problem(rel, mark.line + 1 if mark else 0, f"không đọc được tệp ({e})".split("\n")[0],
                                  "kiểm tra cú pháp YAML: thụt lề bằng dấu cách")]
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        return {}, None, [Problem(rel, 1, "tệp phải có 'duong_day_nong' và 'lien_ket'")]
    hotline = None
    hl = data.get("duong_day_nong")
    if isinstance(hl, dict) and hl.get("so"):
        hotline = Hotline(hl.get("ten", "Đường dây nóng"), hl["so"], hl.get("url", ""))
    else:
        problems.append(Problem(rel, 1, "thiếu 'duong_day_nong' với 'so'", "ghi số đường dây nóng chính thức"))
    items = data.get("lien_ket") or []
    items_node = next((v for k, v in node.value if k.value == "lien_ket"), None)
    lines = [i.start_mark.line + 1 for i in items_node.value] if isinstance(items_node, yaml.SequenceNode) else []
    links: dict[str, Link] = {}
    for item, line in zip(items if isinstance(items, list) else [], lines):
        if not isinstance(item, dict) or not all(item.get(k) for k in ("id", "ten", "url")):
            problems.append(Problem(rel, line, "mỗi liên kết cần 'id', 'ten' và 'url'", "bổ sung trường còn thiếu"))
        elif not URL_RE.match(item["url"]):
            problems.append(Problem(rel, line, f"'url' không hợp lệ: '{item['url']}'", "dán đường dẫn đầy đủ"))
        elif item["id"] in links:
            problems.append(Problem(rel, line, f"liên kết '{item['id']}' bị trùng", "đổi id hoặc xóa một mục"))
        else:
            links[item["id"]] = Link(item["id"], item["ten"], item["url"], item.get("mac_dinh", "") in ("co", "có"))
    return links, hotline, problems


AGENCY_FOLDERS = {"bo-cong-an": "Bộ Công an", "bo-tai-chinh": "Bộ Tài chính", "bo-tu-phap": "Bộ Tư pháp",
                  "bo-xay-dung": "Bộ Xây dựng", "bo-nong-nghiep-mt": "Bộ Nông nghiệp và Môi trường",
                  "ngan-hang-nha-nuoc": "Ngân hàng Nhà nước Việt Nam", "toa-an-nhan-dan": "Tòa án nhân dân"}


def coverage_lines(kb: KnowledgeBase) -> list[str]:
    """What the base covers: curated entries, imported records by agency and field, procedures known by name."""
    curated = [e for e in kb.entries.values() if not e.imported]
    imported = [e for e in kb.entries.values() if e.imported]
    lines = [f"Kho gồm {len(curated)} mục biên soạn và {len(imported)} thủ tục nhập từ Cổng Dịch vụ công quốc gia."]
    if imported:
        agencies: dict[str, int] = {}
        fields: set[str] = set()
        for e in imported:
            folder = e.text("nhap_tu").split("/", 1)[0]
            name = AGENCY_FOLDERS.get(folder, folder)
            agencies[name] = agencies.get(name, 0) + 1
            fields.add(e.text("linh_vuc"))
        lines.append("Thủ tục nhập theo cơ quan: " + ", ".join(f"{a} {n}" for a, n in
                                                             sorted(agencies.items(), key=lambda x: -x[1]))
                     + f"; {len(fields)} lĩnh vực.")
    if kb.listings:
        by_agency: dict[str, int] = {}
        for x in kb.listings:
            by_agency[x.agency or "?"] = by_agency.get(x.agency or "?", 0) + 1
        lines.append(f"Chỉ biết tên (chưa có chi tiết): {len(kb.listings)} thủ tục — "
                     + ", ".join(f"{a} {n}" for a, n in sorted(by_agency.items(), key=lambda x: -x[1])[:8]) + ".")
    return lines


def knowledge_files(dirs: Iterable[Path]) -> list[tuple[Path, Path]]:
    """Every entry file under the knowledge folders, with the folder it came from, in a stable order."""
    out = []
    for base in dirs:
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.md")):
            rel_parts = path.relative_to(base).parts
            if len(rel_parts) < 2 or rel_parts[0] in SKIP_DIRS or any(p.startswith(".") for p in rel_parts):
                continue  # README.md at the top, templates, hidden folders
            out.append((base, path))
    return out


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base.parent))
    except ValueError:
        return str(path)


def load_knowledge(dirs: Iterable[Path], today: dt.date | None = None,
                   imported: Iterable[Path] = ()) -> KnowledgeBase:
    """Parse and validate every knowledge file; report all problems, never stop at the first.

    Entries from `imported` folders (the national database import) yield to curated entries naming the same code.
    """
    imported = [Path(d) for d in imported]
    dirs = list(dirs) + [d for d in imported if d.is_dir()]
    today = today or dt.date.today()
    kb = KnowledgeBase()
    where: dict[str, str] = {}
    for base in dirs:
        if not base.is_dir():
            kb.problems.append(Problem(str(base), 0, "không có thư mục kho tri thức", "kiểm tra [knowledge] dirs"))
            continue
        for name, parse in ((DICTIONARY_FILE, "synonyms"), (LINKS_FILE, "links")):
            path = base / name
            if not path.exists():
                continue
            kb.files.append(path)
            if parse == "synonyms":
                synonyms, problems = parse_synonyms(path, _rel(path, base))
                kb.synonyms.extend(synonyms)
            else:
                links, hotline, problems = parse_links(path, _rel(path, base))
                kb.links.update(links)
                kb.hotline = kb.hotline or hotline
            kb.problems.extend(problems)
    for base, path in knowledge_files(dirs):
        rel = _rel(path, base)
        kb.files.append(path)
        entry, problems = parse_entry(path, rel, today)
        kb.problems.extend(problems)
        if entry is None:
            continue
        if entry.id in kb.entries:
            kb.problems.append(Problem(rel, entry.lines.get("id", 1), f"id '{entry.id}' đã dùng ở {where[entry.id]}",
                                       "mỗi mục cần một id riêng"))
            continue
        kb.entries[entry.id] = entry
        where[entry.id] = rel
    for base in imported:
        path = base / LISTINGS_FILE
        if path.is_file():
            kb.files.append(path)
            listings, problems = parse_listings(path, _rel(path, base))
            kb.problems.extend(problems)
            held = {c for e in kb.entries.values() for c in e.codes}
            kb.listings.extend(x for x in listings if x.code not in held)
    if imported:
        curated_codes = {c for e in kb.entries.values() if not e.imported for c in e.codes}
        for entry_id in [i for i, e in kb.entries.items() if e.imported and set(e.codes) & curated_codes]:
            del kb.entries[entry_id]
            kb.shadowed += 1
    for entry in kb.entries.values():
        for target in entry.values("lien_quan"):
            if ID_RE.match(target) and target not in kb.entries:
                close = difflib.get_close_matches(target, list(kb.entries), n=1)
                fix = f"có phải ý bạn là '{close[0]}'?" if close else "sửa id cho đúng, hoặc tạo mục đó"
                kb.problems.append(Problem(entry.path, entry.lines.get("lien_quan", 1),
                                           f"'lien_quan' nhắc tới '{target}' nhưng không có mục nào có id này", fix))
        online = entry.text("nop_truc_tuyen")
        if online and kb.link_for(online) is None:
            kb.problems.append(Problem(entry.path, entry.lines.get("nop_truc_tuyen", 1),
                                       f"'nop_truc_tuyen' không phải đường dẫn hay mã liên kết: '{online}'",
                                       f"dùng https://... hoặc một mã trong {LINKS_FILE}: {', '.join(kb.links)}"))
    if not kb.entries and not kb.errors:
        kb.problems.append(Problem(", ".join(str(d) for d in dirs), 0, "kho tri thức chưa có mục nào",
                                   "thêm tệp theo mẫu trong knowledge/mau/"))
    return kb
