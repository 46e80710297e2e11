"""Staff commands over the question log: `log purge`, `review [--export DIR]`, `report --since 30d --out FILE`."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from bot.config import ConfigError, load_config


def _config(args):
    try:
        return load_config(args.config)
    except ConfigError as e:
        sys.exit(f"Lỗi cấu hình: {e}")


def _log(cfg):
    """The question log (created empty when no channel has written one yet)."""
    from bot.service.qlog import QuestionLog, SchemaError

    try:
        return QuestionLog.open(cfg)
    except SchemaError as e:
        sys.exit(f"Lỗi: {e}")


def _assistant(cfg, required: bool):
    from bot.engine.assistant import Assistant
    from bot.engine.index import IndexUnavailable

    try:
        return Assistant(cfg, batched=False).load()
    except IndexUnavailable as e:
        if required:
            sys.exit(f"Lỗi: {e}")
        print(f"Chưa có chỉ mục ({e}); câu hỏi chỉ được nhóm khi giống hệt nhau.", file=sys.stderr)
        return None


def _since(text: str | None, now: dt.datetime) -> dt.datetime | None:
    from .report import parse_since

    if not text:
        return None
    try:
        return parse_since(text, now)
    except ValueError as e:
        sys.exit(f"Lỗi: {e}")


def purge(args: argparse.Namespace) -> int:
    """Delete questions older than [log] retention_days (and closed tickets)."""
    cfg = _config(args)
    days = args.days if args.days is not None else cfg.log.retention_days
    if days < 1:
        sys.exit("Lỗi: số ngày lưu giữ phải từ 1 trở lên.")
    log = _log(cfg)
    try:
        gone = log.purge(days)
        if log.kind == "sqlite":  # give the freed pages back to the file system
            log.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        log.close()
    print(f"Đã xoá {gone['questions']} câu hỏi và {gone['tickets']} yêu cầu gặp cán bộ đã đóng, cũ hơn {days} ngày.")
    return 0


def _clusters(rows, assistant, with_closest: bool = True):
    from .review import add_closest, group, prepare_for

    if assistant is None:
        return group(rows, None)
    clusters = group(rows, assistant.encoder, prepare=prepare_for(assistant))
    if with_closest:
        add_closest(clusters, assistant)
    return clusters


def review(args: argparse.Namespace) -> int:
    """Unanswered and 👎 questions grouped by similarity, with the closest entry; --export writes FAQ drafts."""
    from .review import export_drafts, format_clusters

    cfg = _config(args)
    since = _since(args.since, dt.datetime.now(dt.UTC))
    log = _log(cfg)
    try:
        rows = log.questions(since)
    finally:
        log.close()
    assistant = _assistant(cfg, required=True)
    clusters = _clusters(rows, assistant)
    print(format_clusters(clusters, args.limit))
    if args.export is not None:
        folder = Path(args.export) if args.export else cfg.data_dir / "drafts"
        chosen = [c for c in clusters if c.count >= args.min_count][: args.limit]
        files = export_drafts(chosen, folder, set(assistant.data.entries))
        print(f"\nĐã viết {len(files)} bản nháp hỏi đáp vào {folder}: điền câu trả lời, chuyển vào knowledge/hoi-dap/, "
              "chạy index_builder.py --check rồi index_builder.py.")
    return 0


def report(args: argparse.Namespace) -> int:
    """Write the HTML report of the question log (or, with --sample, of a generated sample log)."""
    from bot.service.qlog import QuestionLog, hash_key

    from .report import charts, render_html, summarize

    cfg = _config(args)
    now = dt.datetime.now(dt.UTC)
    since = _since(args.since, now)
    if args.sample:
        from bot.engine.knowledge import load_knowledge

        from .sample import faq_questions, generate_sample

        path = cfg.data_dir / "log" / "sample.db"
        for stale in path.parent.glob("sample.db*"):
            stale.unlink()
        log = QuestionLog(path, hash_key(cfg.data_dir))
        generate_sample(log, faq_questions(load_knowledge(cfg.knowledge_dirs)), now=now)
    else:
        log = _log(cfg)
    try:
        rows = log.questions(since)
        tickets = log.ticket_count(since)
    finally:
        log.close()
    assistant = _assistant(cfg, required=False)
    clusters = _clusters(rows, assistant)
    summary = summarize(rows, tickets)
    period = f"{args.since} (từ {since:%d/%m/%Y})" if since else "toàn bộ nhật ký"
    html = render_html(summary, charts(summary, rows), clusters, period, now, sample=args.sample)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    print(f"Đã viết báo cáo {out} ({summary['questions']} câu hỏi, {len(clusters)} nhóm chưa trả lời được).")
    return 0


def register(sub) -> None:
    """Add the staff commands to the `python -m bot` parser."""
    p_log = sub.add_parser("log", help="question log maintenance")
    log_sub = p_log.add_subparsers(dest="log_command", required=True)
    p_purge = log_sub.add_parser("purge", help="delete questions older than [log] retention_days")
    p_purge.add_argument("--days", type=int, help="override [log] retention_days")
    p_purge.set_defaults(func=purge)

    p_review = sub.add_parser("review", help="unanswered and 👎 questions grouped by similarity")
    p_review.add_argument("--since", help="only questions since: 30d, 8w, 12h or a date 2026-11-01")
    p_review.add_argument("--limit", type=int, default=50, help="groups to show (and export)")
    p_review.add_argument("--export", nargs="?", const="", metavar="DIR",
                          help="write FAQ drafts of the groups into DIR (default: <data>/drafts)")
    p_review.add_argument("--min-count", type=int, default=1, help="export only groups asked at least this often")
    p_review.set_defaults(func=review)

    p_report = sub.add_parser("report", help="self-contained HTML report of the question log")
    p_report.add_argument("--since", default="30d", help="period: 30d (default), 8w, 12h or a date 2026-11-01")
    p_report.add_argument("--out", default="report.html", help="HTML file to write (default: report.html)")
    p_report.add_argument("--sample", action="store_true",
                          help="report on a generated sample log (<data>/log/sample.db), not the real one")
    p_report.set_defaults(func=report)
