"""Load run of the Telegram channel: many citizens asking at once, through the real python-telegram-bot polling loop
and the local fake Bot API server (tests/fake_telegram.py), answered from the serving index.

    python -m bench.telegram_load                 # 200 users × 5 questions, printed
    python -m bench.telegram_load --write         # and written into BENCHMARKS.md under its own heading

All questions arrive at once (queued at the fake server before the first getUpdates). Every question must be
answered exactly once; latency is from arrival to the answer's sendMessage reaching the server. The same questions
are then put straight to the desk, one after another, to show what the channel adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import sys
import tempfile
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


def question_log():
    """A question log in a temporary folder, as a deployment has one (every answer is recorded)."""
    from bot.service.qlog import QuestionLog

    return QuestionLog(Path(tempfile.mkdtemp(prefix="cchc-load-")) / "questions.db", b"load-run")


def batch(users: int, per_user: int) -> list[tuple[int, str]]:
    """(user, question) in arrival order: every user's first question, then every user's second…"""
    pool = questions()
    return [(100_000 + i, pool[(i * per_user + round_) % len(pool)]) for round_ in range(per_user) for i in range(users)]


def desk_alone(assistant, users: int, per_user: int) -> dict:
    """The same questions straight to the desk, one after another: what answering costs without Telegram."""
    from bot.service.desk import Desk

    desk = Desk(assistant, log=question_log(), rate_count=per_user * 2, rate_seconds=60)
    started = time.monotonic()
    done = []
    for user, question in batch(users, per_user):
        desk.ask("telegram", str(user), question)
        done.append(time.monotonic() - started)
    desk.close()
    return {"questions": len(done), "answers": len(done), "exactly_once": True, "seconds": done[-1],
            "throughput": len(done) / done[-1], "p50": statistics.median(done), "p95": done[int(0.95 * (len(done) - 1))],
            "typing": 0, "refused": 0, "problems": []}


async def queued_telegram(desk, cfg, users: int, per_user: int):
    """The Telegram channel over a fresh fake Bot API with users × per_user questions already queued there;
    returns (channel, fake, app, questions expected per chat). Start it with `start_polling(app)`."""
    from bot.channels.telegram import TelegramChannel
    from tests.fake_telegram import FakeTelegram

    channel = TelegramChannel(desk, cfg)
    fake = await FakeTelegram(limits=True).start()
    app = channel.build(fake.token, fake.base_url)
    expected: Counter[int] = Counter()
    for user, question in batch(users, per_user):
        fake.text(user, question)
        expected[user] += 1
    return channel, fake, app, expected


async def start_polling(app) -> None:
    """Start python-telegram-bot's polling loop as fast as the fake lets it poll."""
    from bot.channels.telegram import ALLOWED_UPDATES

    await app.initialize()
    await app.updater.start_polling(poll_interval=0, timeout=1, allowed_updates=ALLOWED_UPDATES)
    await app.start()


async def stop_telegram(app, fake) -> None:
    """Stop polling and the application, then the fake server."""
    await app.updater.stop()
    await app.stop()
    await app.shutdown()
    await fake.close()


async def load_run(assistant, cfg, users: int, per_user: int) -> dict:
    """Queue users × per_user questions at once, serve them, and measure."""
    from bot.service.desk import Desk

    a = cfg.answer
    desk = Desk(assistant, log=question_log(), rate_count=per_user * 2, rate_seconds=60, workers=a.workers,
                max_wait_s=a.max_wait_s, queue=a.queue)
    channel, fake, app, expected = await queued_telegram(desk, cfg, users, per_user)
    total = sum(expected.values())
    started = time.monotonic()
    await start_polling(app)
    try:
        await fake.wait_until(lambda: len(fake.sent) >= total, timeout=600)
        await asyncio.sleep(1.0)  # anything sent twice would show up now
    finally:
        await stop_telegram(app, fake)
        desk.close()
    per_chat = Counter(s.chat_id for s in fake.sent)
    latencies = sorted(s.at - started for s in fake.sent)
    return {
        "questions": total,
        "answers": len(fake.sent),
        "exactly_once": per_chat == expected,
        "kinds": dict(channel.kinds),
        "seconds": latencies[-1],
        "throughput": len(fake.sent) / latencies[-1],
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "typing": len(fake.calls_of("sendChatAction")),
        "refused": fake.limited,
        "problems": fake.problems,
    }


def report(results: list[tuple[str, dict]], users: int, per_user: int, command: str, load: float) -> str:
    """The BENCHMARKS.md section."""
    lines = [HEADING, "",
             f"Produced by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, Python "
             f"{platform.python_version()}, {os.cpu_count()} cores, load average {load:.1f} at the start: a shared "
             f"machine, figures vary run to run): {users} users × {per_user} questions (the golden questions) arriving at "
             "once, served by the real python-telegram-bot polling loop from the serving index through the local "
             "fake Bot API server (in the same process; no network latency), which enforces Telegram's flood limits (30 "
             "messages a second overall, 1 a second in a chat, 20 a minute in a group; 429 + retry_after above them), "
             "every answer recorded in a question log. Latency is from arrival to the answer reaching the server.",
             "", "| run | answered | exactly once | messages (answers) a second | p50 latency | p95 latency | typing actions | "
             "429 from the fake |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results:
        lines.append(f"| {name} | {r['answers']}/{r['questions']} | {'yes' if r['exactly_once'] else 'NO'} | "
                     f"{r['throughput']:.1f}/s | {r['p50']:.1f} s | {r['p95']:.1f} s | {r['typing']} | "
                     f"{r['refused']} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this benchmark's own section of BENCHMARKS.md."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _m: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the load run and the desk-alone comparison; print (and with --write, store) the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.telegram_load", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--questions", type=int, default=5, help="questions per user")
    parser.add_argument("--write", action="store_true", help="write the figures into BENCHMARKS.md")
    args = parser.parse_args(argv)
    from bot.engine.assistant import Assistant

    load = os.getloadavg()[0]
    cfg = load_config()
    assistant = Assistant(cfg).load()
    assistant.ask("làm thẻ căn cước cần gì")  # warm up the encoder
    results = []
    result = asyncio.run(load_run(assistant, cfg, args.users, args.questions))
    print(f"telegram: {result}", file=sys.stderr)
    if result["problems"] or not result["exactly_once"]:
        print("FAILED: not every question was answered exactly once, or the fake refused a request", file=sys.stderr)
        return 1
    results.append(("Telegram: polling, our flood control at the cap (limits.FairRateLimiter)", result))
    result = desk_alone(assistant, args.users, args.questions)
    print(f"desk alone: {result}", file=sys.stderr)
    results.append(("the same questions straight to the desk, no Telegram", result))
    command = (f"python -m bench.telegram_load --users {args.users} --questions {args.questions}"
               + (" --write" if args.write else ""))
    section = report(results, args.users, args.questions, command, load)
    print(section)
    if args.write:
        write_section(ROOT / "BENCHMARKS.md", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
