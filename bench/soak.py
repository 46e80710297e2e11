"""Soak the core: many simulated citizens ask the desk for N minutes; resident memory is sampled every few seconds.

    python -m bench.soak --minutes 5 --threads 16 [--out data/bench/soak.csv]

Each thread is a group of citizens on one channel; every message goes through `Desk.aask`, the entry point the
async channels use, so all answers run on the desk's one worker thread, as in production. Questions are the golden
set, the development set when ../shared is present, and the nasty corpus of tests/data/nasty.tsv (about one in
five). Prints one JSON line: questions answered, the kinds of answer, latency, and memory after warm-up, at the end,
its peak and its trend (MB per minute, least squares over the samples after warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bot.config import ROOT

WARM_UP_SECONDS = 30.0


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def questions() -> list[str]:
    """Real questions and nasty ones, in a fixed mix."""
    real = []
    for path in (ROOT / "bench/golden.tsv", ROOT.parent / "shared/eval/dev.tsv"):
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line and not line.startswith("#") and "\t" in line:
                    real.append(line.split("\t")[0])
    nasty = []
    for line in (ROOT / "tests/data/nasty.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            category, literal, times = line.split("\t")
            nasty.append(json.loads(literal) * int(times))
    mix = real * max(1, (4 * len(nasty)) // max(len(real), 1)) + nasty
    return mix


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--users", type=int, default=200, help="distinct citizens per thread")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--out", default="data/bench/soak.csv", help="memory samples (CSV)")
    parser.add_argument("--config")
    args = parser.parse_args(argv)

    from bot.config import load_config
    from bot.service.desk import Desk, open_desk

    cfg = load_config(args.config)
    desk: Desk = open_desk(cfg)
    desk.rate.count = 0  # a soak measures the core, not the per-citizen limit
    pool = questions()
    started = time.monotonic()
    stop_at = started + args.minutes * 60
    kinds: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[str] = []

    def citizens(thread: int) -> None:
        rng = random.Random(thread)
        channel = ("telegram", "zalo", "web")[thread % 3]

        async def run() -> None:
            while time.monotonic() < stop_at:
                user = f"{thread}-{rng.randrange(args.users)}"
                asked = time.perf_counter()
                try:
                    reply = await desk.aask(channel, user, rng.choice(pool))
                except Exception as e:  # a crash is what a soak is looking for: count it, keep going
                    with lock:
                        failures.append(repr(e))
                    continue
                with lock:
                    latencies.append(time.perf_counter() - asked)
                    kinds[reply.answer.kind] += 1

        asyncio.run(run())

    threads = [threading.Thread(target=citizens, args=(i,), daemon=True) for i in range(args.threads)]
    for t in threads:
        t.start()
    samples: list[tuple[float, float, int]] = []
    while any(t.is_alive() for t in threads):
        with lock:
            answered = sum(kinds.values())
        samples.append((round(time.monotonic() - started, 1), round(rss_mb(), 1), answered))
        time.sleep(args.every)
    for t in threads:
        t.join()
    desk.close()
    samples.append((round(time.monotonic() - started, 1), round(rss_mb(), 1), sum(kinds.values())))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["seconds", "rss_mb", "answered"])
        writer.writerows(samples)
    warm = [(t, m) for t, m, _ in samples if t >= WARM_UP_SECONDS] or [(t, m) for t, m, _ in samples]
    minutes = np.array([t / 60 for t, _ in warm])
    mb = np.array([m for _, m in warm])
    slope = float(np.polyfit(minutes, mb, 1)[0]) if len(warm) >= 3 else float("nan")
    lat = np.array(latencies) * 1000
    total = sum(kinds.values())
    print(json.dumps({
        "minutes": args.minutes, "threads": args.threads, "citizens": args.threads * args.users,
        "answered": total, "per_second": round(total / (time.monotonic() - started), 1),
        "kinds": dict(kinds), "failures": len(failures),
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                       "max": round(float(lat.max()), 1)} if total else {},
        "rss_mb": {"after_warm_up": warm[0][1], "end": warm[-1][1], "peak": max(m for _, m, _ in samples)},
        "rss_trend_mb_per_minute": round(slope, 2),
        "samples": str(out),
    }, ensure_ascii=False))
    return 1 if failures or kinds.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
