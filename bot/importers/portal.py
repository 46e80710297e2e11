"""Import procedures from the National Public Service Portal's crawled records into knowledge entry files.

The crawled records (`procedures/<agency>/<code>.json`, see ../shared/data/README.md) flatten the portal's
tables: cells run together without separators. The small parsers here split them back into rows only where
the text allows it without guessing; where a split is not sure, the entry keeps the portal's raw text, because
a wrong fee or deadline is worse than an unformatted one. Nothing is invented: every sentence of a generated
entry is either the portal's text or a fixed phrase saying what the portal does (not) give.

    python -m bot.importers.portal SRC DEST [--lists FOLDER] [--date 2026-01-31]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import tempfile
import time
import unicodedata
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
    STALE_AFTER_DAYS,
    THOI_HAN,
    TRINH_TU,
    TRUC_TUYEN,
)

# Every field a crawled record may have; anything else marks a record from another source or a broken one.
KNOWN_FIELDS = frozenset({
    "ma_thu_tuc", "detail_url", "formality_id", "ten_thu_tuc", "so_quyet_dinh", "cap_thuc_hien", "loai_thu_tuc",
    "linh_vuc", "doi_tuong_thuc_hien", "co_quan_co_tham_quyen", "dia_chi_tiep_nhan", "co_quan_duoc_uy_quyen",
    "co_quan_phoi_hop", "thu_tuc_lien_quan", "trinh_tu_thuc_hien", "cach_thuc_thuc_hien", "thanh_phan_ho_so",
    "can_cu_phap_ly", "co_quan_thuc_hien", "yeu_cau_dieu_kien", "ket_qua_xu_ly", "raw_text",
})
NO_INFO = "Không có thông tin"
ID_PREFIX = "tthc-"
FOLDER = "thu-tuc"
PORTAL_URL = "https://dichvucong.gov.vn"
# An unchanged entry keeps its old check date; past this age a re-import refreshes it anyway, so imported
# entries never reach the validator's "older than a year" warning while their text stays the same.
REFRESH_AFTER_DAYS = STALE_AFTER_DAYS // 2

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


def markdown_safe(text: str) -> str:
    """Keep portal text from turning into Markdown headings or closing the front matter."""
    return re.sub(r"(?m)^(\s*)(#|---\s*$)", r"\1\\\2", text)


def _indent(text: str) -> str:
    """Continuation lines of a list item."""
    return text.replace("\n", "\n  ")


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


def _channel_list(names: Iterable[str]) -> str:
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
    matches = list(_DOCNUM_RE.finditer(s))
    if len(matches) != len(_LOOSE_DOCNUM_RE.findall(s)) or re.search(r"\d{5,}/\d{4}/", s):
        return None, "số hiệu văn bản lạ hoặc dính vào chữ số khác"
    ends = [_docnum_end(s, m) for m in matches]

    def glued_to_next(i: int) -> str:
        """'direct' if number i+1 follows at once, 'prefix' if after a glued 'Số '/'Luật '…, else ''; either
        way only when number i+1 is itself glued to what follows (else it starts a name: '…Thông tư 5/2020/TT-X
        quy định…')."""
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

    def bare(i: int) -> str:
        return re.sub(r"\s", "", matches[i].group(0))

    rows: list[LegalDoc] = []
    row_start = 0
    forced = False  # the previous number ended a name: this one is the number cell
    for i, m in enumerate(matches):
        end = ends[i]
        rest = s[end:].replace("\x00", "")
        glued = "" if forced else glued_to_next(i)
        if glued:
            after = glued_to_next(i + 1)
            if glued == "prefix" and after == "direct":
                pass  # a cell; the next name is 'Thông tư 80/2021/TT-BTC', its cell follows it
            elif glued == "direct" and after and bare(i + 1) == bare(i + 2):
                pass  # a cell, then a row whose name is only its number: '…NĐ-CP01/2013/TT-X01/2013/TT-X'
            elif glued == "direct" and after == "direct":
                return None, f"ba số hiệu liền nhau ({bare(i)}, {bare(i + 1)}, {bare(i + 2)})"
            else:
                forced = True  # name ends in a number, the cell follows: 'Nghị định 5/2021/NĐ-CP5/2021/NĐ-CP'
                continue
        was_forced, forced = forced, False
        if rest and (rest[0].isspace() or rest[0] in ",;:).") and not was_forced:
            before_char = s[m.start() - 1:m.start()]
            if before_char and not before_char.isspace() and before_char not in "(\x00":
                return None, "số hiệu dính chữ phía trước nhưng có dấu cách phía sau"
            continue  # a number quoted inside a name
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
        rows.append(LegalDoc(name, number))
        row_start = end
    if s[row_start:].strip("\x00 "):
        return None, "phần cuối không có số hiệu"
    if not rows:
        return None, "không có dòng nào"
    return rows, ""


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


# --------------------------------------------------------------------------- entries


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
class ListRow:
    """A procedure in an official XLSX list."""

    code: str
    name: str
    issuer: str
    bodies: str
    field: str
    source: str


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
        channels = _channel_list(r.channel for r in rows).lower()
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
        return _bullets(f"{_channel_list(names)}: {value}" for value, names in groups.items())

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
        where.append("Mô tả trên Cổng:\n\n" + _bullets(f"{_channel_list(n)}: {d}" for d, n in descriptions.items()))
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


def record_to_entry(record: dict[str, str], rel: str, today: dt.date, listed: ListRow | None = None,
                    stats: Stats | None = None) -> str:
    """The knowledge file text for one portal record (already checked to have a code and a name)."""
    stats = stats if stats is not None else Stats()
    record, fixed = repair_record(record)
    if fixed:
        stats.repaired += 1
    code = one_line(record["ma_thu_tuc"])
    name = one_line(record["ten_thu_tuc"])
    url = one_line(record.get("detail_url", "")) or PORTAL_URL
    field_name = one_line(record.get("linh_vuc", "")) or (listed.field if listed else "") or NO_INFO
    level = one_line(record.get("cap_thuc_hien", "")) or NO_INFO
    agency = ""
    for key in ("co_quan_thuc_hien", "co_quan_co_tham_quyen"):
        if not no_info(record.get(key, "")):
            agency = one_line(record[key]).rstrip(",;. ")
            break
    if not agency and listed and listed.bodies:
        agency = listed.bodies
        stats.bodies_from_lists += 1
    if not agency:
        agency = "Cổng Dịch vụ công quốc gia không ghi cơ quan thực hiện"
        stats.no_body += 1

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
    timing, fees, where, online_text, online = _render_channels(rows, body, url, record, agency)

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
    summary += f" Thông tin nhập từ Cổng Dịch vụ công quốc gia ({'; '.join(origin)})."

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
    meta += [("nguon", yaml_value(url)), ("ngay_kiem_tra", today.isoformat()), ("nhap_tu", yaml_value(rel))]
    out = ["---", *(f"{k}: {v}" for k, v in meta), "---", "", markdown_safe(summary), ""]
    for heading, text in sections:
        out += [f"## {heading}", "", markdown_safe(text.strip()), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- lists


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):  # a code typed as a number: 1.00119 is 1.001190
        return f"{value:.6f}"
    return str(value)


def _sheet_rows(ws, source: str) -> tuple[list[ListRow], bool]:  # type: ignore[no-untyped-def]
    """The procedures in one worksheet, and whether it had the header row ('Mã số', 'Tên', …)."""
    columns: dict[str, int] = {}
    out: list[ListRow] = []
    for values in ws.iter_rows(values_only=True):
        raw = [_cell_text(v) for v in values]
        cells = [one_line(v) for v in raw]
        if not columns:
            if "Mã số" in cells:
                columns = {c: i for i, c in enumerate(cells) if c}
            continue

        def cell(name: str, cells: list[str] = cells, columns: dict[str, int] = columns) -> str:
            i = columns.get(name)
            return cells[i] if i is not None and i < len(cells) else ""

        code = cell("Mã số")
        if not CODE_RE.match(code):
            continue
        i = columns.get("Cơ quan thực hiện")
        lines = raw[i].split("\n") if i is not None and i < len(raw) else []
        bodies = ", ".join(one_line(b) for b in lines if b.strip())
        out.append(ListRow(code, cell("Tên"), cell("Cơ quan ban hành"), bodies, cell("Lĩnh vực"), source))
    return out, bool(columns)


def read_lists(path: Path) -> tuple[dict[str, ListRow], list[str]]:
    """Procedures in the official XLSX lists (a folder of *.xlsx or one file), with problems found."""
    import openpyxl

    files = sorted(path.glob("*.xlsx")) if path.is_dir() else [path]
    rows: dict[str, ListRow] = {}
    problems: list[str] = []
    for f in files:
        try:
            wb = openpyxl.load_workbook(f, read_only=True, data_only=True)
        except Exception as e:  # noqa: BLE001 — a broken list must not stop the import
            problems.append(f"{f.name}: không đọc được ({type(e).__name__}: {e})")
            continue
        try:
            for ws in wb.worksheets:
                found, has_header = _sheet_rows(ws, f.name)
                for row in found:
                    rows.setdefault(row.code, row)
                if not has_header:
                    problems.append(f"{f.name}: trang '{ws.title}' không có dòng tiêu đề 'Mã số'")
        finally:
            wb.close()
    return rows, problems


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


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def _write_if_changed(path: Path, text: str, today: dt.date) -> bool:
    """Write `text` unless the file already holds it (a different check date alone does not count, until the
    old date is REFRESH_AFTER_DAYS old). Writes through a temporary file and os.replace."""
    data = text.encode("utf-8")
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = None
    if old is not None:
        if old == data:
            return False
        date_re = re.compile(rb"^ngay_kiem_tra: (\d{4}-\d{2}-\d{2})$", re.M)
        m = date_re.search(old)
        if m and date_re.sub(b"ngay_kiem_tra: X", old, 1) == date_re.sub(b"ngay_kiem_tra: X", data, 1):
            try:
                age = (today - dt.date.fromisoformat(m.group(1).decode())).days
            except ValueError:
                age = REFRESH_AFTER_DAYS + 1
            if 0 <= age <= REFRESH_AFTER_DAYS:
                return False
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


def import_portal(src: Path, dest: Path, lists: Path | None = None, today: dt.date | None = None,
                  progress: bool = False) -> ImportReport:
    """Turn every `<agency>/<code>.json` record under `src` into `dest/thu-tuc/tthc-<code>.md`.

    Bad records are reported and skipped (their earlier entry, if any, is kept). Files are written only
    when their text changed; entries whose record disappeared are removed.
    """
    started = time.perf_counter()
    src, dest = Path(src), Path(dest)
    today = today or dt.date.today()
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

        try:
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError:
            bad("tệp không phải UTF-8")
            continue
        except json.JSONDecodeError as e:
            bad(f"JSON hỏng (dòng {e.lineno}, cột {e.colno}: {e.msg})")
            continue
        except OSError as e:
            bad(f"không đọc được tệp ({e.strerror})")
            continue
        record, reason = check_record(data, rel)
        if record is None:
            bad(reason)
            continue
        code = one_line(record["ma_thu_tuc"])
        if code in seen:
            bad(f"mã thủ tục {code} trùng với {seen[code]}")
            continue
        seen[code] = rel
        ident = entry_id(code)
        text = record_to_entry(record, rel, today, listed.get(code), report.stats)
        produced.add(ident)
        if _write_if_changed(out_dir / f"{ident}.md", text, today):
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


def main(argv: list[str] | None = None) -> int:
    """Command line: import, print the report; exit 1 if any record was bad."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="folder of <agency>/<code>.json records")
    parser.add_argument("dest", type=Path, help="destination knowledge folder (entries go to <dest>/thu-tuc/)")
    parser.add_argument("--lists", type=Path, help="folder of the official *.xlsx procedure lists")
    parser.add_argument("--date", type=dt.date.fromisoformat, help="check date to record (default: today)")
    args = parser.parse_args(argv)
    if not args.src.is_dir():
        print(f"Không có thư mục {args.src}", file=sys.stderr)
        return 2
    report = import_portal(args.src, args.dest, args.lists, args.date, progress=sys.stderr.isatty())
    print(report.summary())
    return 1 if report.bad else 0


if __name__ == "__main__":
    sys.exit(main())
