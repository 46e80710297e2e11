"""Names of procedures the base does not hold, so the bot can say that one exists, who handles it and where to look.

    python index_builder.py --import-names ../shared/data/portal-faq-train.tsv

The portal's FAQ links each question to the procedures that answer it, with their codes, names and ministry.
Procedures the base holds (by code, or by the same name at another level) are left out; the rest are written to
`<data>/portal/danh-muc.tsv` (code, name, agency), which the index turns into name-level entries: the bot answers
a question about one of them with its name, its agency and a link to search the national portal, never with
details it does not have. Questions whose `faq_id` is a multiple of 5 are held out for evaluation
(`bench.coverage`): their names are not imported, so a held-out question is routed by name only when another
question names the same procedure.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bot.engine.knowledge import LISTINGS_FILE, LISTINGS_HEADER
from bot.engine.text import syllables

CODE_RE = re.compile(r"^\d\.\d{6}$")
# Where a name says at which level it is done: the same procedure at another level is the same procedure here.
_LEVEL = re.compile(r"\b(?:(?:ở|tại|thực hiện tại|do)\s+)?(?:cấp\s+(?:tỉnh|xã|huyện|trung ương|bộ|cơ sở)|"
                    r"ubnd cấp (?:tỉnh|xã|huyện))\b", re.I)


def held_out(faq_id: int) -> bool:
    """The fixed evaluation part of the portal FAQ: never imported, never fitted on (also for the encoder)."""
    return faq_id % 5 == 0


def name_key(name: str) -> str:
    """A procedure name with its level, parenthetical notes and a leading 'Thủ tục' left out, folded."""
    name = re.sub(r"\([^)]*\)", " ", name)
    name = _LEVEL.sub(" ", name)
    words = syllables(name)
    if words[:2] == ["thu", "tuc"]:
        words = words[2:]
    return " ".join(words)


@dataclass
class NamesReport:
    """What an import of names did."""

    rows: int = 0
    held_out: int = 0
    written: int = 0
    held: int = 0  # named procedures the base holds (by code or equivalent name): not written
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"Danh mục tên thủ tục: {self.written} thủ tục chưa có trong kho (từ {self.rows} câu hỏi, để riêng "
                f"{self.held_out} câu để đánh giá; {self.held} thủ tục đã có trong kho), {len(self.problems)} dòng lỗi.")


def read_faq(path: Path) -> list[dict[str, str]]:
    """Rows of the portal FAQ file (faq_id, question, codes, procedure_names, ministry, answer)."""
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def import_names(faq: Path, dest: Path, held_codes: set[str], held_names: set[str]) -> NamesReport:
    """Write `dest/danh-muc.tsv` from the non-held-out FAQ rows' procedures that the base does not hold."""
    report = NamesReport()
    found: dict[str, tuple[str, str]] = {}
    held: set[str] = set()
    for n, row in enumerate(read_faq(faq), 2):
        report.rows += 1
        try:
            faq_id = int(row.get("faq_id") or "")
        except ValueError:
            report.problems.append(f"{faq}:{n}: faq_id không phải số")
            continue
        if held_out(faq_id):
            report.held_out += 1
            continue
        codes = [c.strip() for c in (row.get("codes") or "").split(",") if c.strip()]
        names = [x.strip() for x in (row.get("procedure_names") or "").split(" | ")]
        if not codes or len(codes) != len(names) or not all(CODE_RE.match(c) for c in codes):
            report.problems.append(f"{faq}:{n}: mã và tên thủ tục không khớp nhau")
            continue
        for code, name in zip(codes, names):
            if code in held_codes or name_key(name) in held_names:
                held.add(code)
                continue
            found.setdefault(code, (" ".join(name.split()), " ".join((row.get("ministry") or "").split())))
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=".danh-muc.")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(LISTINGS_HEADER)
        for code in sorted(found):
            writer.writerow((code, *found[code]))
    os.replace(tmp, dest / LISTINGS_FILE)
    report.written, report.held = len(found), len(held)
    return report
