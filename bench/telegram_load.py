"""Load run of the Telegram channel: many citizens asking at once, through the real python-telegram-bot polling loop
and the local fake Bot API server (tests/fake_telegram.py), answered from the serving index.

    python -m bench.telegram_load                 # 200 users × 5 questions, printed
    python -m bench.telegram_load --write         # and written into BENCHMARKS.md under its own heading

All questions arrive at once (queued at the fake server before the first getUpdates). Every question must be
answered exactly once; latency is from arrival to the answer's sendMessage reaching the server. The run is
repeated without python-telegram-bot's flood control (Telegram's 30 messages/s) to show what the desk alone does.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from bot.config import ROOT, load_config

HEADING = "## Telegram load run"


def questions(path: Path = ROOT / "bench" / "golden.tsv") -> list[str]:
    """Realistic citizen questions: the golden set's."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            out.append(line.split("\t")[0])
    return out


async def load_run(assistant, cfg, users: int, per_user: int, flood_control: bool) -> dict:
    """Queue users × per_user questions at once, serve them, and measure."""
    from bot.desk import Desk
    from bot.telegram_channel import ALLOWED_UPDATES, TelegramChannel
    from tests.fake_telegram import FakeTelegram

    pool = questions()
    desk = Desk(assistant, rate_count=per_user * 2, rate_seconds=60)
    channel = TelegramChannel(desk, cfg)
    fake = await FakeTelegram().start()
    app = channel.build(fake.token, fake.base_url, flood_control=flood_control)
    expected: dict[int, int] = {}
    for round_ in range(per_user):
        for i in range(users):
            user = 100_000 + i
            fake.text(user, pool[(i * per_user + round_) % len(pool)])
            expected[user] = expected.get(user, 0) + 1
    total = sum(expected.values())
    started = time.monotonic()
    await app.initialize()
    await app.updater.start_polling(poll_interval=0, timeout=1, allowed_updates=ALLOWED_UPDATES)
    await app.start()
    try:
        await fake.wait_until(lambda: len(fake.sent) >= total, timeout=600)
        await asyncio.sleep(1.0)  # anything sent twice would show up now
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        await fake.close()
        desk.close()
    per_chat = Counter(s.chat_id for s in fake.sent)
    latencies = sorted(s.at - started for s in fake.sent)
    return {
        "questions": total,
        "answers": len(fake.sent),
        "exactly_once": per_chat == Counter(expected),
        "kinds": dict(channel.kinds),
        "seconds": latencies[-1],
        "throughput": total / latencies[-1],
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "typing": len(fake.calls_of("sendChatAction")),
        "problems": fake.problems,
    }


def report(results: list[tuple[str, dict]], users: int, per_user: int, command: str) -> str:
    """The BENCHMARKS.md section."""
    lines = [HEADING, "",
             f"Produced by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, Python "
             f"{platform.python_version()}): {users} users × {per_user} questions (the golden questions) arriving at "
             "once, served by the real python-telegram-bot polling loop from the serving index through the local "
             "fake Bot API server (no network latency). Latency is from arrival to the answer reaching the server.",
             "", "| run | answered | exactly once | throughput | p50 latency | p95 latency | typing actions |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results:
        lines.append(f"| {name} | {r['answers']}/{r['questions']} | {'yes' if r['exactly_once'] else 'NO'} | "
                     f"{r['throughput']:.1f} questions/s | {r['p50']:.1f} s | {r['p95']:.1f} s | {r['typing']} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this benchmark's own section of BENCHMARKS.md."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _m: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the load run with and without flood control; print (and with --write, store) the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.telegram_load", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--questions", type=int, default=5, help="questions per user")
    parser.add_argument("--write", action="store_true", help="write the figures into BENCHMARKS.md")
    args = parser.parse_args(argv)
    from bot.assistant import Assistant

    cfg = load_config()
    assistant = Assistant(cfg).load()
    assistant.ask("làm thẻ căn cước cần gì")  # warm up the encoder
    results = []
    for name, flood in (("with flood control (30 messages/s, as Telegram allows)", True),
                        ("without flood control (the desk alone)", False)):
        result = asyncio.run(load_run(assistant, cfg, args.users, args.questions, flood))
        print(f"{name}: {result}", file=sys.stderr)
        if result["problems"] or not result["exactly_once"]:
            print("FAILED: not every question was answered exactly once, or the fake refused a request", file=sys.stderr)
            return 1
        results.append((name, result))
    command = "python -m bench.telegram_load" + (" --write" if args.write else "")
    section = report(results, args.users, args.questions, command)
    print(section)
    if args.write:
        write_section(ROOT / "BENCHMARKS.md", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
