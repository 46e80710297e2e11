"""The official XLSX procedure lists (danh sách thủ tục hành chính): code, name, issuer, bodies and field of each
procedure, filling what a crawled record lacks. Imports the engine's knowledge schema and `parse` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.engine.knowledge import CODE_RE

from .parse import one_line


@dataclass
class ListRow:
    """A procedure in an official XLSX list."""

    code: str
    name: str
    issuer: str
    bodies: str
    field: str
    source: str



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
