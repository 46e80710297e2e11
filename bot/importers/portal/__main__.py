"""`python -m bot.importers.portal SRC DEST [--lists FOLDER] [--source-date 2026-01-31]`: import, print the report."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from bot.importers import portal

from .write import import_portal


def main(argv: list[str] | None = None) -> int:
    """Command line: import, print the report; exit 1 if any record was bad."""
    parser = argparse.ArgumentParser(prog="python -m bot.importers.portal", description=portal.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path, help="folder of <agency>/<code>.json records")
    parser.add_argument("dest", type=Path, help="destination knowledge folder (entries go to <dest>/thu-tuc/)")
    parser.add_argument("--lists", type=Path, help="folder of the official *.xlsx procedure lists")
    parser.add_argument("--source-date", type=dt.date.fromisoformat,
                        help="the date of the records (their crawl or export), shown with them; without it they are "
                             "cited 'theo dữ liệu Cổng Dịch vụ công quốc gia' with no date")
    args = parser.parse_args(argv)
    if not args.src.is_dir():
        print(f"Không có thư mục {args.src}", file=sys.stderr)
        return 2
    report = import_portal(args.src, args.dest, args.lists, args.source_date, progress=sys.stderr.isatty())
    print(report.summary())
    return 1 if report.bad else 0


if __name__ == "__main__":
    sys.exit(main())
