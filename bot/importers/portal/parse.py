"""Parsers of a crawled portal record's cells: the flattened tables (channels, documents, legal basis), results,
conditions, the crawler's field shifts, and whether a record is fit to import at all.

Each parser splits a cell back into rows only where the text allows it without guessing, and says when it could
not (the entry then keeps the portal's raw text). Pure functions over strings; imports the engine's knowledge
schema only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.engine.knowledge import CODE_RE

# Every field a crawled record may have; anything else marks a record from another source or a broken one.
KNOWN_FIELDS = frozenset({
    "ma_thu_tuc", "detail_url", "formality_id", "ten_thu_tuc", "so_quyet_dinh", "cap_thuc_hien", "loai_thu_tuc",
    "linh_vuc", "doi_tuong_thuc_hien", "co_quan_co_tham_quyen", "dia_chi_tiep_nhan", "co_quan_duoc_uy_quyen",
    "co_quan_phoi_hop", "thu_tuc_lien_quan", "trinh_tu_thuc_hien", "cach_thuc_thuc_hien", "thanh_phan_ho_so",
    "can_cu_phap_ly", "co_quan_thuc_hien", "yeu_cau_dieu_kien", "ket_qua_xu_ly", "raw_text",
})
NO_INFO = "Không có thông tin"
LOWER = "a-zàáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ"
UPPER = LOWER.upper()


# --------------------------------------------------------------------------- text helpers


def clean(text: str) -> str:
    """Normalise the portal's text: NFC, no NBSP or tabs, no trailing spaces, at most one blank line."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\xa0", " ").replace("\u200b", "").replace("\t", " ")
    lines = [re.sub(r" {2,}", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def one_line(text: str) -> str:
    """Clean text on a single line (names, titles, front matter values)."""
    return re.sub(r"\s+", " ", clean(text)).strip()


def no_info(text: str) -> bool:
    """Whether the portal gave nothing: empty, dashes only, or 'Không có thông tin'."""
    t = one_line(text)
    return not t.strip("-–. ") or t.rstrip(".") == NO_INFO


# --------------------------------------------------------------------------- cách thức thực hiện

CT_HEADER = "Hình thức nộpThời gianPhí, lệ phíMô tả"
CHANNELS = {"Trực tiếp": "Nộp trực tiếp", "Trực tuyến": "Nộp trực tuyến", "Dịch vụ bưu chính": "Qua dịch vụ bưu chính"}
_CHANNEL_RE = re.compile("|".join(CHANNELS))
_UNITS = ("Ngày làm việc", "Ngày", "Giờ", "Tháng", "Năm", "Tuần", "Phút")
_UNIT_RE = re.compile(r" ?(" + "|".join(_UNITS) + r")")
_CURRENCY = r"(Việt Nam Đồng|VNĐ|VND|Đồng|đồng|USD|EUR)"
_DONG = ("Việt Nam Đồng", "VNĐ", "VND", "Đồng", "đồng")
_FEE_WORD_RE = re.compile(r"Miễn phí|" + NO_INFO)
_AMOUNT_RE = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)? ?" + _CURRENCY)
_DIGITS_RE = re.compile(r"\d[\d,.]*")
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)?")
_TEXT_TIME_RE = re.compile(
    rf"[{UPPER}][^\n]{{0,200}}?(?=Miễn phí|{NO_INFO}|(?:\d{{1,3}}(?:,\d{{3}})+|\d+) ?{_CURRENCY})")


@dataclass(frozen=True)
class Channel:
    """One row of the portal's 'Cách thức thực hiện' table.

    `time_limit` and `fee` are None when the row's cells could not be told apart for sure (then `raw`, the
    row's text after the channel, is what to show). `unit` is '' when the portal gave a bare number.
    """

    channel: str
    time_limit: str | None
    fee: str | None
    description: str
    fee_note: str = ""
    unit: str = ""
    raw: str = ""

    @property
    def sure(self) -> bool:
        return self.time_limit is not None and self.fee is not None


def _valid_time(digits: str) -> bool:
    return bool(re.fullmatch(r"0|[1-9]\d*", digits))


def _valid_amount(digits: str) -> bool:
    return bool(re.fullmatch(r"0|[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d*", digits))


def _fee_at(s: str, pos: int) -> tuple[str, int] | None:
    m = _FEE_WORD_RE.match(s, pos)
    if m:
        return m.group(0), m.end()
    m = _AMOUNT_RE.match(s, pos)
    if m:
        return m.group(0), m.end()
    return None


def _row_head(s: str, pos: int) -> tuple[str | None, str, str | None, int] | None:
    """Parse the time and fee cells that follow a channel at `pos`: (time, unit, fee, end), or None if the
    text there is not a table row. Time and fee are None when the digits of a bare time and a fee run
    together in more than one possible way (e.g. '120 VNĐ': 1 and 20, or 12 and 0)."""
    if s.startswith(NO_INFO, pos):
        fee = _fee_at(s, pos + len(NO_INFO))
        return (NO_INFO, "", fee[0], fee[1]) if fee else None
    m = _DIGITS_RE.match(s, pos)
    if m:
        number = _NUMBER_RE.match(s, pos)
        assert number is not None
        unit = _UNIT_RE.match(s, number.end())
        if unit:
            fee = _fee_at(s, unit.end())
            return (number.group(0), unit.group(1), fee[0], fee[1]) if fee else None
        word = _FEE_WORD_RE.match(s, number.end())
        if word:
            return number.group(0), "", word.group(0), word.end()
        amount = re.compile(r"(\d[\d,]*)(?:\.\d+)? ?" + _CURRENCY).match(s, pos)
        if not amount:
            return None
        run = amount.group(1)
        splits = [(run[:i], run[i:]) for i in range(1, len(run)) if _valid_time(run[:i]) and _valid_amount(run[i:])]
        if len(splits) == 1:
            time_part, fee_digits = splits[0]
            return time_part, "", fee_digits + amount.group(0)[len(run):], amount.end()
        return None, "", None, amount.end()
    m = _TEXT_TIME_RE.match(s, pos)
    if m:
        fee = _fee_at(s, m.end())
        if fee:
            return m.group(0), "", fee[0], fee[1]
    return None


def _balanced_prefix(s: str) -> int:
    """Length of the parenthesised note at the start of `s` ('(…)' with nesting), or -1 if not closed."""
    depth = 0
    for i, ch in enumerate(s):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _strip_parens(note: str) -> str:
    note = note.strip()
    while note.startswith("(") and _balanced_prefix(note) == len(note):
        note = note[1:-1].strip()
    return note


def channel_body(text: str) -> str | None:
    """The table text after its header, or None if the header is missing."""
    text = unicodedata.normalize("NFC", text).replace("\xa0", " ")
    if not text.startswith(CT_HEADER):
        return None
    return text[len(CT_HEADER):]


def parse_channels(text: str) -> list[Channel]:
    """Split 'cach_thuc_thuc_hien' into rows (channel, time limit, fee, description).

    Returns [] when the text cannot be split into rows with confidence (no header, text before the first
    row, an unclaimed 'channel+number' inside a description); single rows whose time and fee digits run
    together ambiguously come back with `time_limit`/`fee` None and their raw text.
    """
    body = channel_body(text)
    if body is None or not body.strip():
        return []
    starts: list[tuple[int, str, tuple[str | None, str, str | None, int]]] = []
    for m in _CHANNEL_RE.finditer(body):
        head = _row_head(body, m.end())
        if head is not None:
            starts.append((m.start(), m.group(0), head))
    if not starts or starts[0][0] != 0:
        return []
    rows: list[Channel] = []
    for i, (start, name, (time_limit, unit, fee, end)) in enumerate(starts):
        stop = starts[i + 1][0] if i + 1 < len(starts) else len(body)
        if end > stop:
            return []
        rest = body[end:stop]
        raw = body[start + len(name):stop].strip()
        # A channel glued to a number that did not parse as a row: the split would hide a row.
        if re.search("(?:" + _CHANNEL_RE.pattern + r")\d", rest):
            return []
        note = ""
        if rest.startswith("("):
            close = _balanced_prefix(rest)
            if close < 0:
                rows.append(Channel(name, None, None, "", raw=raw))
                continue
            note, rest = _strip_parens(rest[:close]), rest[close:]
        if time_limit is None or fee is None:
            rows.append(Channel(name, None, None, "", raw=raw))
        else:
            rows.append(Channel(name, time_limit, fee, clean(rest), fee_note=clean(note), unit=unit, raw=raw))
    return rows


def format_time(row: Channel) -> str:
    """A row's time limit as a citizen reads it."""
    t = row.time_limit or ""
    if t == NO_INFO:
        return "Cổng không có thông tin"
    if row.unit:
        return f"{t} {row.unit.lower()}"
    if _NUMBER_RE.fullmatch(t):
        if t == "0":
            return "Cổng ghi 0, không nêu thời hạn cụ thể"
        return f"{t} (Cổng chỉ ghi số, không ghi đơn vị)"
    return t


def format_fee(row: Channel) -> str:
    """A row's fee with the portal's note, e.g. '2.000.000 đồng (Phí thẩm định…)'."""
    fee = row.fee or ""
    if fee == NO_INFO:
        fee = "Cổng không có thông tin"
    else:
        m = _AMOUNT_RE.fullmatch(fee)
        if m:
            currency = m.group(2)
            digits = fee[: m.start(2)].strip().replace(",", ".")
            if currency not in _DONG:
                fee = f"{digits} {currency}"
            elif int(m.group(1).replace(",", "")) < 1000:  # the portal sometimes counts in thousands
                fee = f"{fee} (Cổng ghi đúng số này, dưới 1.000 đồng: đối chiếu ghi chú và trang thủ tục)"
            else:
                fee = f"{digits} đồng"
    return f"{fee} ({row.fee_note})" if row.fee_note else fee


def channel_list(names: Iterable[str]) -> str:
    labels = list(dict.fromkeys(CHANNELS[n] for n in names))
    text = ", ".join(labels)
    return text[0].upper() + text[1:].lower() if text else text


# --------------------------------------------------------------------------- thành phần hồ sơ

DOC_HEADER = "Tên giấy tờMẫu đơn, tờ khaiSố lượng"
_QTY_RE = re.compile(r"(\d) bản chính(?:,(\d) bản sao)?(?=$|[^\s.,;:)])")
_FORM_RE = re.compile(r"(?<=[^\s(])((?:Mẫu|Mau|MẪU|MAU|Phụ lục|PHỤ LỤC|Phu luc|PL|TK|BM|TP-)[^\n]{0,150}?"
                      r"\.(?:docx|doc|pdf|xlsx|xls|rar|zip))$")
_EXT_RE = re.compile(r"\.(?:docx|doc|pdf|xlsx|xls|rar|zip)$", re.I)


@dataclass(frozen=True)
class Document:
    """One paper of a procedure's file: its name, the form file the portal links, how many copies."""

    name: str
    originals: int
    copies: int
    form: str = ""

    @property
    def quantity(self) -> str:
        parts = [f"{self.originals} bản chính"] if self.originals else []
        parts += [f"{self.copies} bản sao"] if self.copies else []
        return ", ".join(parts)

    def line(self) -> str:
        extra = [f"mẫu: {self.form}"] if self.form else []
        extra += [self.quantity] if self.quantity else []
        return f"{self.name} ({'; '.join(extra)})" if extra else self.name


@dataclass(frozen=True)
class DocumentGroup:
    """Papers under one heading ('Giấy tờ phải nộp', 'Trường hợp…'); `rest` is trailing text with no quantity."""

    title: str
    documents: tuple[Document, ...]
    rest: str = ""


def _doc_name(text: str) -> tuple[str, str]:
    name = one_line(text)
    form = ""
    if _EXT_RE.search(name):
        m = _FORM_RE.search(name)
        if m and len(name) - len(m.group(1)) > 3:
            form, name = m.group(1), name[: m.start(1)].rstrip()
    name = re.sub(r"^(?:[-+*–•]\s*)+", "", name).strip()
    return name, form


def _group_title(text: str) -> str:
    return one_line(text).strip("-*–+ ").strip()


def parse_documents(text: str) -> list[DocumentGroup]:
    """Split 'thanh_phan_ho_so' into groups of documents with their quantities ([] if it has no table)."""
    text = unicodedata.normalize("NFC", text).replace("\xa0", " ")
    if DOC_HEADER not in text:
        return []
    parts = text.split(DOC_HEADER)
    title = parts[0]
    groups: list[DocumentGroup] = []
    for n, segment in enumerate(parts[1:], 1):
        docs: list[Document] = []
        pos = 0
        for m in _QTY_RE.finditer(segment):
            name, form = _doc_name(segment[pos:m.start()])
            if name:
                docs.append(Document(name, int(m.group(1)), int(m.group(2) or 0), form))
            pos = m.end()
        tail = segment[pos:]
        last = n == len(parts) - 1
        groups.append(DocumentGroup(_group_title(title), tuple(docs), "" if not last else clean(tail)))
        title = "" if last else tail
    return groups


def documents_sure(groups: list[DocumentGroup]) -> bool:
    """Whether every group has documents and no text was left without a quantity."""
    return bool(groups) and all(g.documents and not g.rest.strip("-*– .") for g in groups)


# --------------------------------------------------------------------------- căn cứ pháp lý

LAW_HEADER = "Tên văn bản pháp lýMã văn bản"
# Parts of a document number after the year: issuing type and body, e.g. NĐ-CP, TT-BTC, QĐ-TTg, QH13.
_AGENCIES = sorted("""
    CP TTg NĐ ND QĐ TT NQ TTLT NQLT L PL CT CTN UBND HĐND HĐTP HĐTC TANDTC VKSNDTC UBTVQH UBTV BCA BTC BTP NHNN
    BXD BGTVT BNNMT BNNPTNT BTNMT BYT BLĐTBXH BCT BKHĐT BKHCN BQP BNV BTTTT BVHTTDL BGDĐT BNG VPCP BHXH TCHQ TCT
    UBCKNN KTNN BCA BTTT BKH TCTK TCHC BCĐ VBHN QH KT TLĐ MTTQ TWMTTQ HĐQT BTCTW BCH ĐCT TANDTC CP BCT BTM BTS
    BTNMT BVHTT BCN BBCVT BGD BLĐ UBDT BQL BXDBTC C06 C07 C08 C04 C01 C02 C03 C05 C09 C10 C11 A05 A06 A08 V03
""".split(), key=len, reverse=True)
_PART = r"(?:[A-ZĐ]*QH\d{2}|" + "|".join(_AGENCIES) + r")"
_DOCNUM_RE = re.compile(rf"(?<![\d/])(?<!\d\.)(?:\d{{1,3}}\.\d{{1,2}}|\d{{1,4}})/\d{{4}}/{_PART}(?:-\s?{_PART})*")
# An all-capitals name after a number cell ('…NĐ-CPQUY ĐỊNH…', '…QH13LUẬT HÀNG KHÔNG…'): a word with a
# Vietnamese letter no issuing-body code has, or one of the few plain title words.
_CAPS_WORD_RE = re.compile(r"(?:QUY|BAN|CHI|TRONG)\s|[A-ZĐ]*"
                           r"[ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴ]")
_LOOSE_DOCNUM_RE = re.compile(r"\d{1,4}/\d{4}/[A-ZĐ]")
_PREFIX_RE = re.compile(r"(?:(?:Bộ luật|BỘ LUẬT|Luật|LUẬT|Luất|Nghị định|Nghị quyết|Thông tư liên tịch|Thông tư|"
                        r"Quyết định|Pháp lệnh|Chỉ thị|Văn bản hợp nhất)\s*(?:số\s*)?|"
                        r"(?:NĐ|TT|QĐ|NQ)\s+(?:số\s*)?|[Ss]ố\s*)$")


@dataclass(frozen=True)
class LegalDoc:
    """A legal basis row: the document's name and its number cell (e.g. 'Luật Hộ tịch', '60/2014/QH13')."""

    name: str
    number: str

    def line(self) -> str:
        bare = _DOCNUM_RE.search(self.number)
        key = re.sub(r"\s", "", bare.group(0) if bare else self.number)
        if not self.name:
            return self.number
        if key and key in re.sub(r"\s", "", self.name):
            return self.name
        return f"{self.name} ({self.number})"


def _docnum_end(s: str, m: re.Match[str]) -> int:
    end = m.end()
    # 'QH14.' glued to the next cell keeps its full stop
    if s[end:end + 1] == "." and (end + 1 == len(s) or not s[end + 1].isspace()):
        end += 1
    return end


def parse_legal_basis(text: str) -> list[LegalDoc] | None:
    """Split 'can_cu_phap_ly' into (name, number) rows; None if the text does not split cleanly."""
    rows, _ = legal_rows(text)
    return rows


def legal_rows(text: str) -> tuple[list[LegalDoc] | None, str]:
    """Rows of 'can_cu_phap_ly', or None and why they cannot be told apart for sure.

    A number cell is a document number glued to what follows (the next row's name, or the end); a number
    followed by a space is quoted inside a name. A name may end in a number, then the number cell follows
    at once ('Nghị định 121/2021/NĐ-CP121/2021/NĐ-CP', '73/2025/TT-NHNNSố 73/2025/TT-NHNN'). Unknown
    issuing bodies, digits running into a number and rows with no name are not guessed.
    """
    text = unicodedata.normalize("NFC", text).replace("\xa0", " ")
    if not text.startswith(LAW_HEADER):
        return None, "không có dòng tiêu đề của bảng"
    s = one_line(text[len(LAW_HEADER):])
    s = re.sub(r"(QH\d{2})(?=\d)", "\\1\x00", s)  # 'QH1354/2014/QH13': the session number has two digits
    # A name ending in a year runs into the number cell: 'Luật Doanh nghiệp 202076/2025/QH15'.
    s = re.sub(r"(?<=[ /\-])((?:19|20)\d\d)(?=\d{1,4}/\d{4}/)", "\\1\x00", s)
    if not s:
        return None, "bảng trống"
    numbers = _Numbers(s)
    if len(numbers.matches) != len(_LOOSE_DOCNUM_RE.findall(s)) or re.search(r"\d{5,}/\d{4}/", s):
        return None, "số hiệu văn bản lạ hoặc dính vào chữ số khác"
    rows: list[LegalDoc] = []
    row_start = 0
    forced = False  # the previous number ended a name: this one is the number cell
    for i in range(len(numbers.matches)):
        was_forced, forced = forced, False
        if not was_forced:
            forced, problem = numbers.ends_a_name(i)
            if problem:
                return None, problem
            if forced:
                continue
        quoted, problem = numbers.quoted(i, was_forced)
        if problem:
            return None, problem
        if quoted:
            continue
        row, problem = numbers.row(i, row_start)
        if row is None:
            return None, problem
        rows.append(row)
        row_start = numbers.ends[i]
    if s[row_start:].strip("\x00 "):
        return None, "phần cuối không có số hiệu"
    if not rows:
        return None, "không có dòng nào"
    return rows, ""


class _Numbers:
    """The document numbers of a flattened legal-basis table ('\\x00' marks a cut made sure), and how each stands
    against its neighbours."""

    def __init__(self, s: str):
        self.s = s
        self.matches = list(_DOCNUM_RE.finditer(s))
        self.ends = [_docnum_end(s, m) for m in self.matches]

    def glued_to_next(self, i: int) -> str:
        """'direct' if number i+1 follows at once, 'prefix' if after a glued 'Số '/'Luật '…, else ''; either
        way only when number i+1 is itself glued to what follows (else it starts a name: '…Thông tư 5/2020/TT-X
        quy định…')."""
        s, matches, ends = self.s, self.matches, self.ends
        if i + 1 >= len(matches):
            return ""
        after = s[ends[i + 1]:].replace("\x00", "")
        if after[:1].isspace() or after[:1] in (",", ";", ":", ")"):
            return ""
        between = s[ends[i]:matches[i + 1].start()].replace("\x00", "")
        if between == "":
            return "direct"
        if not between[:1].isspace() and _PREFIX_RE.fullmatch(between):
            return "prefix"
        return ""

    def bare(self, i: int) -> str:
        """Number i without spaces."""
        return re.sub(r"\s", "", self.matches[i].group(0))

    def ends_a_name(self, i: int) -> tuple[bool, str]:
        """Whether number i ends a name and number i+1 is its cell, or why that cannot be told."""
        glued = self.glued_to_next(i)
        if not glued:
            return False, ""
        after = self.glued_to_next(i + 1)
        if glued == "prefix" and after == "direct":
            return False, ""  # a cell; the next name is 'Thông tư 80/2021/TT-BTC', its cell follows it
        if glued == "direct" and after and self.bare(i + 1) == self.bare(i + 2):
            return False, ""  # a cell, then a row whose name is only its number: '…NĐ-CP01/2013/TT-X01/2013/TT-X'
        if glued == "direct" and after == "direct":
            return False, f"ba số hiệu liền nhau ({self.bare(i)}, {self.bare(i + 1)}, {self.bare(i + 2)})"
        return True, ""  # name ends in a number, the cell follows: 'Nghị định 5/2021/NĐ-CP5/2021/NĐ-CP'

    def quoted(self, i: int, is_cell: bool) -> tuple[bool, str]:
        """Whether number i is quoted inside a name (a space or a stop follows it), or why it is neither that nor a
        cell; `is_cell` when the number before ended a name, so this one is its cell whatever follows."""
        s, m = self.s, self.matches[i]
        rest = s[self.ends[i]:].replace("\x00", "")
        if not rest or not (rest[0].isspace() or rest[0] in ",;:).") or is_cell:
            return False, ""
        before_char = s[m.start() - 1:m.start()]
        if before_char and not before_char.isspace() and before_char not in "(\x00":
            return False, "số hiệu dính chữ phía trước nhưng có dấu cách phía sau"
        return True, ""

    def row(self, i: int, row_start: int) -> tuple[LegalDoc | None, str]:
        """The row whose number cell is number i and whose name starts at `row_start`, or why there is none."""
        s, m, end = self.s, self.matches[i], self.ends[i]
        rest = s[end:].replace("\x00", "")
        if rest[:1] == "-" or (re.match(r"[A-ZĐ][A-ZĐ0-9]", rest) and not _CAPS_WORD_RE.match(rest)):
            return None, f"cơ quan ban hành lạ trong số hiệu ({s[m.start():end + 8]})"
        cell_start = m.start()
        before = s[row_start:m.start()].rstrip("\x00")
        prefix = _PREFIX_RE.search(before)
        if prefix and (prefix.start() == 0 or not before[prefix.start() - 1].isspace()):
            cell_start = row_start + prefix.start()
        name = s[row_start:cell_start].replace("\x00", "").strip()
        number = s[cell_start:end].replace("\x00", "").strip()
        if not name:
            return None, "một dòng không có tên văn bản"
        return LegalDoc(name, number), ""


# --------------------------------------------------------------------------- kết quả, điều kiện

_UI_JUNK = "Chọn cơ quan thực hiện"
_RESULT_CODE_RE = re.compile(r"Mã:\s*(?:(?:[A-Za-z0-9]*[.\-])*[A-Za-z]*\d+|[A-Z]+(?=$|Từ khóa))")


def cut_ui(text: str) -> str:
    """Drop the portal's page furniture the crawler kept ('Chọn cơ quan thực hiện… Nộp hồ sơ')."""
    i = text.find(_UI_JUNK)
    return text[:i] if i >= 0 else text


def parse_results(text: str) -> tuple[list[str], str]:
    """'ket_qua_xu_ly' as (result documents, description). Empty when it is not in the portal's shape."""
    text = unicodedata.normalize("NFC", cut_ui(text)).replace("\xa0", " ")
    m = re.search(r"Từ khóa(.*?)Mô tả(.*)$", text, re.S)
    if not m or "Mã:" not in text[: m.start()]:
        return [], ""
    names = [re.sub(r"^(?:[-+*–•]\s*)+", "", one_line(n)) for n in _RESULT_CODE_RE.split(text[: m.start()])]
    names = [n for n in names if n.strip(". ")]
    description = clean(m.group(2))
    return names, "" if no_info(description) else description


def clean_conditions(text: str) -> str:
    """'yeu_cau_dieu_kien' without the result block the crawler sometimes glued to its end."""
    text = cut_ui(text)
    text = re.sub(r"(?:Mã:\s*\S+)?Từ khóa.{0,400}?Mô tả.{0,400}$", "", text, flags=re.S)
    return clean(text)


# --------------------------------------------------------------------------- record repair


def _joined_in(raw: str, first: str, label: str, second: str) -> str | None:
    """`first + label + second` as it stands in raw_text (the crawler trimmed spaces around labels)."""
    pattern = re.escape(first.strip()) + r"\s*" + re.escape(label) + r"\s*" + re.escape(second.strip())
    m = re.search(pattern, raw)
    return m.group(0) if m else None


def repair_record(record: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Undo the crawler's known field shifts, checked against raw_text; returns the record and what was fixed.

    The crawler cut fields at the first occurrence of the next field's label, so a procedure whose steps
    mention '(Thành phần hồ sơ)' has the steps' tail in thanh_phan_ho_so and the real documents lost; and a
    document list mentioning 'Kết quả xử lý' spills into ket_qua_xu_ly. A repair is kept only when the
    rebuilt text occurs verbatim in raw_text.
    """
    raw = record.get("raw_text", "")
    fixed: list[str] = []
    if not raw:
        return record, fixed
    out = dict(record)
    docs = record.get("thanh_phan_ho_so", "")
    steps = record.get("trinh_tu_thuc_hien", "")
    label = "Thành phần hồ sơ"
    joined = _joined_in(raw, steps, label, docs) if docs and DOC_HEADER not in docs and not no_info(docs) else None
    if joined:
        how = raw.find("Cách Thức Thực Hiện" + CT_HEADER)
        laws = raw.find("Căn cứ pháp lý", how)
        start = raw.find(label, how)
        if 0 <= how < start < laws:
            real = raw[start + len(label):laws]
            if DOC_HEADER in real or no_info(real):
                out["trinh_tu_thuc_hien"] = joined
                out["thanh_phan_ho_so"] = real
                fixed.append("trinh_tu_thuc_hien/thanh_phan_ho_so")
    result = record.get("ket_qua_xu_ly", "")
    label = "Kết quả xử lý"
    joined = _joined_in(raw, docs, label, result) if result and "Từ khóa" not in result and "Mã:" not in result \
        else None
    if joined:
        after = raw.find("Yêu cầu, điều kiện thực hiện")
        start = raw.find(label, after) if after >= 0 else -1
        if start >= 0:
            out["thanh_phan_ho_so"] = joined
            out["ket_qua_xu_ly"] = raw[start + len(label):]
            fixed.append("thanh_phan_ho_so/ket_qua_xu_ly")
    return out, fixed


# --------------------------------------------------------------------------- records


def check_record(data: object, rel: str) -> tuple[dict[str, str] | None, str]:
    """A record fit to import, or None and the reason it is not."""
    if not isinstance(data, dict):
        return None, f"bản ghi phải là một đối tượng JSON, đang là {type(data).__name__}"
    unknown = sorted(str(k) for k in data if k not in KNOWN_FIELDS)
    if unknown:
        return None, f"trường không xác định: {', '.join(unknown)}"
    record: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            value = ""
        if not isinstance(value, str):
            return None, f"trường '{key}' phải là chữ, đang là {type(value).__name__}"
        record[key] = value
    for key in ("ma_thu_tuc", "ten_thu_tuc"):
        if not one_line(record.get(key, "")):
            return None, f"thiếu '{key}'"
    code = one_line(record["ma_thu_tuc"])
    if not CODE_RE.match(code):
        return None, f"mã thủ tục '{code}' không đúng dạng 1.001193"
    stem = Path(rel).stem
    if CODE_RE.match(stem) and stem != code:
        return None, f"mã thủ tục '{code}' khác tên tệp"
    raw_code = re.search(r"Mã thủ tục\s*(\d+\.\d{6})", record.get("raw_text", ""))
    if raw_code and raw_code.group(1) != code:
        return None, (f"nội dung là của thủ tục khác: raw_text ghi mã {raw_code.group(1)} "
                      f"('{one_line(record['ten_thu_tuc'])[:60]}')")
    url = one_line(record.get("detail_url", ""))
    if url and not re.match(r"^https?://\S+$", url):
        return None, f"detail_url không phải đường dẫn: '{url[:60]}'"
    return record, ""
