"""Channel load run: many citizens at once over Telegram and the web API, each question answered exactly once.

    python -m bench.channel_load                          # 1,000 users × 10 questions (half Telegram, half web)
    python -m bench.channel_load --users 300 --questions 10

Half the users (rounded down) write to the bot over Telegram: the real python-telegram-bot polling loop against
the local fake Bot API server (tests/fake_telegram.py), all their questions queued before the first getUpdates, as
bench/telegram_load.py does. The other half use the web chat's JSON API, `POST /api/ask`, on the same aiohttp app
`python -m bot serve` runs, over real local HTTP: every web user starts at once and asks its questions one after
another, each after the previous answer. Both channels share one desk (answers one at a time on its worker
thread) with a question log. Checked at the end: every Telegram chat got exactly as many answers as it asked,
every web request got one 200 answer, and the question log holds exactly one row per question per channel.
Latency: Telegram from the moment all questions were queued to the answer reaching the fake server; web, from
sending a request to its answer. Exit status 1 when anything was lost, doubled or refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import sys
import time
from collections import Counter

import aiohttp
from aiohttp import web

from bench.telegram_load import question_log, questions, queued_telegram, start_polling, stop_telegram
from bot.config import load_config


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[int(q * (len(values) - 1))] if values else float("nan")


async def _web_user(session: aiohttp.ClientSession, url: str, user: str, asks: list[str],
                    latencies: list[float], problems: list[str], answered: Counter[str], ids: list[int]) -> None:
    for question in asks:
        start = time.monotonic()
        try:
            async with session.post(url, json={"question": question, "user": user}) as response:
                data = await response.json()
                if response.status != 200 or not data.get("kind") or data.get("limited"):
                    problems.append(f"web {user}: HTTP {response.status} {str(data)[:120]}")
                    continue
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            problems.append(f"web {user}: {type(e).__name__}: {e}")
            continue
        latencies.append(time.monotonic() - start)
        answered[user] += 1
        if data.get("question_id") is not None:
            ids.append(data["question_id"])


async def run(assistant, cfg, users: int, per_user: int) -> dict:
    """Serve both channels from one desk and send every question at once; measure and check."""
    from bot.channels.web import make_app
    from bot.service.desk import Desk

    tg_users, web_users = users // 2, users - users // 2
    qlog = question_log()
    desk = Desk(assistant, log=qlog, rate_count=per_user * 2, rate_seconds=60)
    # Telegram: every question queued at the fake before the bot starts polling.
    channel, fake, tg_app, expected = await queued_telegram(desk, cfg, tg_users, per_user)
    tg_total = sum(expected.values())
    # Web: `python -m bot serve`'s app (no Zalo secrets given) on a free local port.
    runner = web.AppRunner(make_app(cfg, desk, env={}), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/ask"
    pool = questions()
    plans = {f"load-{i}": [pool[(7 + i * per_user + k) % len(pool)] for k in range(per_user)] for i in range(web_users)}
    web_latencies: list[float] = []
    problems: list[str] = []
    answered: Counter[str] = Counter()
    ids: list[int] = []
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    await start_polling(tg_app)
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
            await asyncio.gather(*(_web_user(http, url, user, asks, web_latencies, problems, answered, ids)
                                   for user, asks in plans.items()))
        await fake.wait_until(lambda: len(fake.sent) >= tg_total, timeout=3600)
        wall = time.monotonic() - started
        await asyncio.sleep(1.0)  # anything sent twice would show up now
    finally:
        await stop_telegram(tg_app, fake)
        await runner.cleanup()
        desk.close()
    load_end = os.getloadavg()[0]
    with contextlib.closing(sqlite3.connect(qlog.path)) as db:
        logged = dict(db.execute("SELECT channel, count(*) FROM questions GROUP BY channel").fetchall())
    per_chat = Counter(s.chat_id for s in fake.sent)
    tg_latencies = [s.at - started for s in fake.sent]
    web_total = web_users * per_user
    exactly_once = {
        "telegram": per_chat == expected,
        "web": all(answered[u] == per_user for u in plans) and len(ids) == len(set(ids)) == web_total,
        "question log": logged.get("telegram", 0) == tg_total and logged.get("web", 0) == web_total,
    }
    return {"users": users, "per_user": per_user, "telegram_questions": tg_total, "telegram_answers": len(fake.sent),
            "web_questions": web_total, "web_answers": sum(answered.values()), "logged": logged,
            "exactly_once": exactly_once, "wall": wall, "throughput": (tg_total + web_total) / wall,
            "tg_p50": _pct(tg_latencies, 0.5), "tg_p95": _pct(tg_latencies, 0.95),
            "web_p50": _pct(web_latencies, 0.5), "web_p95": _pct(web_latencies, 0.95),
            "web_mean": statistics.fmean(web_latencies) if web_latencies else float("nan"),
            "kinds": dict(channel.kinds), "problems": problems[:20] + fake.problems[:20],
            "load_start": load_start, "load_end": load_end}


def main(argv: list[str] | None = None) -> int:
    """Run the load run and print the figures (a RELIABILITY.md table row)."""
    parser = argparse.ArgumentParser(prog="python -m bench.channel_load", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="simulated citizens, half Telegram, half web")
    parser.add_argument("--questions", type=int, default=10, help="questions per user")
    args = parser.parse_args(argv)
    if args.users < 2 or args.questions < 1:
        parser.error("at least 2 users and 1 question each")
    from bot.engine.assistant import Assistant

    cfg = load_config()
    assistant = Assistant(cfg).load()
    assistant.ask("làm thẻ căn cước cần gì")  # warm up the encoder
    r = asyncio.run(run(assistant, cfg, args.users, args.questions))
    print(r, file=sys.stderr)
    ok = all(r["exactly_once"].values()) and not r["problems"]
    print(f"| {r['users']:,} × {r['per_user']} | {r['telegram_answers']:,}/{r['telegram_questions']:,} Telegram, "
          f"{r['web_answers']:,}/{r['web_questions']:,} web | {'yes' if ok else 'NO'} | {r['wall']:.0f} s | "
          f"{r['throughput']:.1f} questions/s | Telegram {r['tg_p50']:.0f} / {r['tg_p95']:.0f} s; "
          f"web {r['web_p50']:.0f} / {r['web_p95']:.0f} s | {r['load_start']:.1f} → {r['load_end']:.1f} |")
    if not ok:
        print("FAILED: a question was lost, answered twice or refused", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
