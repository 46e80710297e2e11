"""Command line: `python -m bot chat`, `python -m bot ask "câu hỏi"`, `python -m bot ask --json`, `python -m bot serve`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from bot.config import ConfigError, load_config


def _assistant(config: str | None):
    from bot.engine.assistant import Assistant
    from bot.engine.index import IndexUnavailable

    try:
        return Assistant(load_config(config), batched=False).load()
    except (ConfigError, IndexUnavailable) as e:
        sys.exit(f"Lỗi: {e}")


def chat(args: argparse.Namespace) -> int:
    """A terminal chat that remembers the procedure being discussed."""
    from bot.channels.terminal import chat as run

    print("Đang tải trợ lý…", file=sys.stderr, flush=True)
    return run(_assistant(args.config))


def ask(args: argparse.Namespace) -> int:
    """One answer as text, or with --json one JSON line per question line read from standard input."""
    from bot.channels.render import to_json, to_text

    if args.json:
        # JSON lines are UTF-8 whatever the locale; bytes that are not UTF-8 become U+FFFD instead of a crash.
        sys.stdin.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
        if args.question:
            questions = [" ".join(args.question)]
        else:
            questions = [line.rstrip("\n") for line in sys.stdin]
        assistant = _assistant(args.config)
        for question in questions:
            print(json.dumps(to_json(assistant.ask(question)), ensure_ascii=False), flush=True)
        return 0
    if not args.question:
        print("Cần một câu hỏi, ví dụ: python -m bot ask \"đăng ký khai sinh ở đâu\"", file=sys.stderr)
        return 2
    assistant = _assistant(args.config)
    print(to_text(assistant.ask(" ".join(args.question))))
    return 0


def telegram(args: argparse.Namespace) -> int:
    """Serve the Telegram bot (long polling, or a webhook behind a reverse proxy)."""
    try:
        cfg = load_config(args.config)
        from bot.channels.telegram import run
    except ConfigError as e:
        sys.exit(f"Lỗi: {e}")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run(cfg, webhook=args.webhook)


def serve(args: argparse.Namespace) -> int:
    """The web server: Zalo OA webhook, JSON API and the embeddable web chat."""
    from bot.channels.web import WorkersError
    from bot.channels.web import serve as run
    from bot.engine.index import IndexUnavailable
    from bot.service.store import SchemaError, StoreError

    try:
        cfg = load_config(args.config)
        workers = f", {args.workers} tiến trình" if args.workers > 1 else ""
        print(f"Trợ lý CCHC: http://{cfg.web.listen}:{cfg.web.port}/{workers} (Ctrl+C để dừng)", file=sys.stderr,
              flush=True)
        run(cfg, workers=args.workers)
    except (ConfigError, IndexUnavailable, StoreError, SchemaError, WorkersError) as e:
        sys.exit(f"Lỗi: {e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m bot", description="Trợ lý CCHC")
    parser.add_argument("--config", help="config file (default: config.toml, or $CCHC_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_chat = sub.add_parser("chat", help="terminal chat")
    p_chat.set_defaults(func=chat)
    p_ask = sub.add_parser("ask", help="answer one question (or, with --json, every line of standard input)")
    p_ask.add_argument("question", nargs="*")
    p_ask.add_argument("--json", action="store_true", help="JSON lines in, one JSON object per line out")
    p_ask.set_defaults(func=ask)
    p_tg = sub.add_parser("telegram", help="Telegram bot (token in $TELEGRAM_BOT_TOKEN)")
    p_tg.add_argument("--webhook", action="store_true",
                      help="webhook mode ([telegram] webhook_url, secret in $TELEGRAM_WEBHOOK_SECRET)")
    p_tg.set_defaults(func=telegram)
    from bot.staff.commands import register as register_staff

    register_staff(sub)  # log purge, review, report
    p_serve = sub.add_parser("serve", help="web server: Zalo OA webhook, JSON API, embeddable web chat")
    p_serve.add_argument("--workers", type=int, default=1,
                         help="worker processes sharing the port (needs [store] url: PostgreSQL)")
    p_serve.set_defaults(func=serve)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))
