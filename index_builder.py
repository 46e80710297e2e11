#!/usr/bin/env python3
"""Build the assistant's index from the knowledge files (what admins run).

    python index_builder.py            build (incremental: only changed text is embedded)
    python index_builder.py --check    validate the knowledge files only, in seconds, no embedding
    python index_builder.py --force    rebuild even when nothing changed
    python index_builder.py --import-portal ../shared/data/procedures [--lists ../shared/data/procedure-lists]
                                       import the national procedure database into <data>/portal/, then build
    python index_builder.py --import-names ../shared/data/portal-faq-train.tsv
                                       names of procedures the base does not hold (from the portal's FAQ), so
                                       the bot can say one exists, who handles it and where to look; then build

A knowledge base with errors is refused: every problem is listed as `file:line: what — how to fix`,
the exit code is 1, and the index already serving stays as it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from bot.config import ConfigError, load_config
from bot.engine.knowledge import KnowledgeBase, coverage_lines, load_knowledge


def report_problems(kb: KnowledgeBase) -> None:
    """Print every problem, errors and warnings, sorted by file and line."""
    for problem in sorted(kb.problems, key=lambda p: (p.path, p.line)):
        print(problem, file=sys.stderr)


def _log(message: str) -> None:
    """A line to standard error; above the progress bar when one is drawn."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, then check or build."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config file (default: config.toml, or $CCHC_CONFIG)")
    parser.add_argument("--check", action="store_true", help="validate only; do not embed or write the index")
    parser.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--import-portal", metavar="DIR", help="procedure records (<agency>/<code>.json) to import first")
    parser.add_argument("--lists", metavar="DIR", help="the portal's XLSX procedure lists, used with --import-portal")
    parser.add_argument("--source-date", metavar="YYYY-MM-DD", type=dt.date.fromisoformat,
                        help="with --import-portal: the date of the records (crawl or export), cited with them")
    parser.add_argument("--import-names", metavar="FAQ_TSV",
                        help="the portal FAQ file (codes, procedure names, ministry) to import names from")
    parser.add_argument("--import-only", action="store_true", help="with --import-portal/--import-names: import, do not build")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"Lỗi cấu hình: {e}", file=sys.stderr)
        return 2

    if args.check:
        started = time.perf_counter()
        kb = load_knowledge(cfg.knowledge_dirs, imported=[cfg.portal_dir])
        report_problems(kb)
        print(f"{len(kb.entries)} mục, {len(kb.errors)} lỗi, {len(kb.warnings)} cảnh báo "
              f"({time.perf_counter() - started:.1f} giây).")
        print("\n".join(coverage_lines(kb)))
        return 1 if kb.errors else 0

    if args.import_portal:
        from pathlib import Path

        from bot.importers.portal import import_portal

        report = import_portal(Path(args.import_portal), cfg.portal_dir, Path(args.lists) if args.lists else None,
                               args.source_date,
                               progress=not args.quiet and sys.stderr.isatty())
        print(report.summary())
    if args.import_names:
        from pathlib import Path

        from bot.importers.names import import_names, name_key

        kb = load_knowledge(cfg.knowledge_dirs, imported=[cfg.portal_dir])
        held_codes = {c for e in kb.entries.values() for c in e.codes}
        names = import_names(Path(args.import_names), cfg.portal_dir, held_codes,
                             {name_key(e.title) for e in kb.entries.values() if e.kind == "procedure"})
        print(names.summary())
        for problem in names.problems[:20]:
            print(problem, file=sys.stderr)
    if args.import_only and (args.import_portal or args.import_names):
        return 0

    from bot.engine.index import BuildRefused, build_index

    try:
        report = build_index(cfg, force=args.force, progress=not args.quiet and sys.stderr.isatty(),
                             log=_log)
    except BuildRefused as refused:
        report_problems(refused.kb)
        print(f"Không xây chỉ mục: {len(refused.kb.errors)} lỗi trong kho tri thức. "
              "Chỉ mục đang phục vụ vẫn giữ nguyên.", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"Lỗi: {e}. Chỉ mục đang phục vụ vẫn giữ nguyên.", file=sys.stderr)
        return 2
    for warning in report.warnings:
        print(warning, file=sys.stderr)
    print(report.summary())
    print("\n".join(report.coverage))
    return 0


if __name__ == "__main__":
    sys.exit(main())
