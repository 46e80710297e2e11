"""Capacity: questions answered side by side with shared encoder batches, against one at a time, in the same run.

    python -m bench.capacity desk [--users 100] [--per-user 5] [--rounds 2] [--write]
    python -m bench.capacity same [--write]            # batched answers against one-by-one answers
    python -m bench.capacity open --rate 50 --seconds 60 [--write]
    python -m bench.capacity overload --rate 1000 --seconds 30 [--write]

`desk`: `users` citizens ask `per_user` questions each, all at once, each waiting for its answer before asking the
next, straight to the desk (`Desk.aask`, the path every channel takes), with a question log. The batched desk
(`[answer] workers`, `batch_size` as configured) and the one-by-one desk (workers = 1, batch_size = 1) take turns,
`rounds` times each; then a lone question is timed on both.

`same`: every question of dev.tsv, golden and portal-dev is answered by the batched desk with all of them in flight
at once and by the one-by-one path; the answers (`ask --json`) must be equal. The lowest cosine between a question's
vector encoded in a batch and alone is quoted.

`open` and `overload`: `python -m bot serve` is started on a free port (as tools/web_load.py does, per-citizen and
per-address limits off) and questions are sent to POST /api/ask at a fixed rate whatever the answers take (open
loop), each from its own citizen. `overload` then keeps asking one question a second until the answers are fast
again, and reads the server's memory from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from bot.config import ROOT, load_config

SHARED = ROOT.parent / "shared"
HEADINGS = {"desk": "## Capacity: the desk, batched and one by one",
            "same": "## Capacity: batched answers equal one-by-one answers",
            "open": "## Capacity: open-loop load on POST /api/ask",
            "overload": "## Overload: ten times capacity on POST /api/ask"}


def pool() -> list[str]:
    """golden, dev and portal-dev questions, in turn."""
    from bench.quality import load_cases

    out: list[str] = []
    for path in (ROOT / "bench" / "golden.tsv", SHARED / "eval" / "dev.tsv", SHARED / "eval" / "portal-dev.tsv"):
        if path.exists():
            out += [q for q, _ in load_cases(path)]
    return out


def one_by_one(cfg):
    """The same settings, answering one question at a time with each question encoded on its own."""
    return replace(cfg, answer=replace(cfg.answer, workers=1, batch_size=1))


def desk_for(assistant, cfg, busy: bool = False):
    """A desk with a question log and no per-citizen limit; without `busy`, no busy replies either (its
    capacity is measured, not how it sheds load)."""
    from bench.telegram_load import question_log
    from bot.service.desk import Desk

    a = cfg.answer
    return Desk(assistant, log=question_log(), rate_count=0, workers=a.workers,
                max_wait_s=a.max_wait_s if busy else float("inf"), queue=a.queue if busy else 10**9)


async def closed_loop(desk, questions: list[str], users: int, per_user: int) -> dict:
    """All citizens at once, each asking its next question when the last is answered."""
    waits: list[float] = []
    kinds: Counter[str] = Counter()

    async def citizen(u: int) -> None:
        for k in range(per_user):
            started = time.perf_counter()
            reply = await desk.aask("web", f"cap{u}", questions[(u * per_user + k) % len(questions)])
            waits.append(time.perf_counter() - started)
            kinds[reply.answer.kind] += 1

    started = time.perf_counter()
    await asyncio.gather(*(citizen(u) for u in range(users)))
    seconds = time.perf_counter() - started
    waits.sort()
    answered = users * per_user - kinds["busy"]
    return {"questions": users * per_user, "seconds": seconds, "throughput": answered / seconds,
            "p50": statistics.median(waits), "p95": waits[int(0.95 * (len(waits) - 1))],
            "busy": kinds["busy"], "kinds": dict(kinds)}


def lone(assistant, questions: list[str], n: int = 40) -> float:
    """Median ms of a question answered alone (nothing else in flight)."""
    times = []
    for q in questions[:n]:
        started = time.perf_counter()
        assistant.ask(q)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run_desk(args) -> str:
    from bot.engine.assistant import Assistant

    cfg = load_config()
    questions = pool()
    modes = {"batched": cfg, "one by one": one_by_one(cfg)}
    if args.threads:  # the other split: the encoder on a thread of this process, sharing its interpreter lock
        modes["batched, encoder on a thread"] = replace(cfg, answer=replace(cfg.answer, encoder_process=False))
    assistants = {name: Assistant(c).load() for name, c in modes.items()}
    for a in assistants.values():
        for q in questions[:20]:
            a.ask(q)  # warm up
    results: dict[str, list[dict]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, c in modes.items():
            desk = desk_for(assistants[name], c)
            result = asyncio.run(closed_loop(desk, questions, args.users, args.per_user))
            desk.close()
            print(f"{name}: {result}", file=sys.stderr)
            results[name].append(result)
    alone = {name: lone(a, questions[200:]) for name, a in assistants.items()}
    batcher = assistants["batched"].batcher
    stats = vars(batcher.stats) if batcher else {}
    for a in assistants.values():
        a.close()
    a = cfg.answer
    lines = [HEADINGS["desk"], "", header(f"python -m bench.capacity desk --users {args.users} --per-user "
                                           f"{args.per_user} --rounds {args.rounds}"
                                           + (" --threads" if args.threads else "")),
             "", f"{args.users} citizens ask {args.per_user} questions each (golden, dev and portal-dev questions), all "
             "at once, each waiting for its answer before asking the next, straight to the desk with a question log. "
             f"Batched: `[answer] workers = {a.workers}`, `batch_size = {a.batch_size}`, `batch_window_ms = "
             f"{a.batch_window_ms}`, the encoder in a process of its own; one by one: workers = 1, batch_size = 1. They "
             f"take turns, {args.rounds} rounds; medians of the rounds. A lone question: median of 40 answered one "
             "after another with nothing else in flight.", "",
             "| desk | answered/s (each round) | median | p50 wait | p95 wait | busy replies | a lone question |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, rs in results.items():
        rates = [r["throughput"] for r in rs]
        lines.append(f"| {name} | {', '.join(f'{x:.1f}' for x in rates)} | {statistics.median(rates):.1f} | "
                     f"{statistics.median(r['p50'] for r in rs):.2f} s | {statistics.median(r['p95'] for r in rs):.2f} s"
                     f" | {sum(r['busy'] for r in rs)} | {alone[name]:.1f} ms |")
    ratio = (statistics.median(r["throughput"] for r in results["batched"])
             / statistics.median(r["throughput"] for r in results["one by one"]))
    lines += ["", f"Batched over one by one: {ratio:.2f}×. Encoder batches: {stats.get('batches', 0)} for "
              f"{stats.get('questions', 0)} questions (largest {stats.get('largest', 0)})."]
    return "\n".join(lines) + "\n"


def run_same(args) -> str:
    """Batched answers (all questions in flight at once) against one-by-one answers."""
    from bot.channels.render import to_json
    from bot.engine.assistant import Assistant

    cfg = load_config()
    batched, single = Assistant(cfg).load(), Assistant(one_by_one(cfg)).load()
    rows = []
    for path in (SHARED / "eval" / "dev.tsv", ROOT / "bench" / "golden.tsv", SHARED / "eval" / "portal-dev.tsv"):
        if path.exists():
            from bench.quality import load_cases

            questions = [q for q, _ in load_cases(path)]
            desk = desk_for(batched, cfg)

            async def everyone(desk=desk, questions=questions):
                return await asyncio.gather(*(desk.aask("web", f"same{i}", q) for i, q in enumerate(questions)))

            replies = asyncio.run(everyone())
            desk.close()
            differ = [q for q, r in zip(questions, replies) if to_json(r.answer) != to_json(single.ask(q))]
            rows.append((path.name, len(questions), len(differ), differ[:3]))
            print(path.name, len(questions), "differ:", len(differ), file=sys.stderr)
    cosine = lowest_cosine(single.encoder, pool(), cfg.answer.batch_size)
    lines = [HEADINGS["same"], "", header("python -m bench.capacity same"), "",
             "Every question of the file answered by the batched desk with all of them in flight at once, against the "
             "one-by-one path (`ask --json` output compared whole), over the serving index in `data/` "
             f"({len(batched.data.entries)} entries).", "",
             "| questions | count | answers that differ |", "| --- | --- | --- |"]
    lines += [f"| {name} | {n} | {d} |" for name, n, d, _ in rows]
    lines += ["", f"Lowest cosine between a question's vector encoded in a batch of {cfg.answer.batch_size} (sorted by "
              f"length, as the batcher sends them) and encoded alone, over {len(pool())} questions: {cosine:.6f}."]
    return "\n".join(lines) + "\n"


def lowest_cosine(encoder, questions: list[str], size: int) -> float:
    alone = np.vstack([encoder.encode([q], role="query") for q in questions])
    order = sorted(range(len(questions)), key=lambda i: -len(questions[i]))
    together = np.zeros_like(alone)
    for start in range(0, len(order), size):
        group = order[start:start + size]
        together[group] = encoder.encode([questions[i] for i in group], role="query", batch_size=len(group))
    cos = np.sum(alone * together, axis=1) / (np.linalg.norm(alone, axis=1) * np.linalg.norm(together, axis=1))
    return float(cos.min())


# -- the web API from outside -------------------------------------------------------------------------------------

class Server:
    """`python -m bot serve` on a free port, limits off, as tools/web_load.py starts it."""

    def __init__(self, extra_env: dict[str, str] | None = None):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        env = dict(os.environ, CCHC_WEB_PORT=str(self.port), CCHC_WEB_LISTEN="127.0.0.1",
                   CCHC_ANSWER_RATE_COUNT="0", CCHC_WEB_IP_RATE_COUNT="0", **(extra_env or {}))
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def ready(self, session) -> None:
        for _ in range(600):
            if self.proc.poll() is not None:
                raise SystemExit("the server stopped")
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.5)
        raise SystemExit("the server did not become healthy")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def ask(session, port: int, question: str, user: str) -> tuple[str, float]:
    """('answered' | 'busy' | 'error', seconds)."""
    started = time.perf_counter()
    try:
        async with session.post(f"http://127.0.0.1:{port}/api/ask", json={"question": question, "user": user}) as r:
            body = await r.read()
            seconds = time.perf_counter() - started
            if r.status == 503:
                return "busy", seconds
            if r.status != 200:
                return "error", seconds
            return ("busy" if json.loads(body).get("kind") == "busy" else "answered"), seconds
    except Exception:
        return "error", time.perf_counter() - started


async def open_loop(server: Server, questions: list[str], rate: float, seconds: float, memory: list[float]):
    """Questions at `rate` a second for `seconds`, each from a new citizen, whatever the answers take."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        await server.ready(session)
        for q in questions[:20]:
            await ask(session, server.port, q, "warm")
        memory.append(server.rss_mib())
        tasks = []
        started = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if i % max(1, int(rate)) == 0:
                memory.append(server.rss_mib())
            tasks.append(asyncio.ensure_future(ask(session, server.port, questions[i % len(questions)], f"o{i}")))
        sent = time.perf_counter() - started
        results = await asyncio.gather(*tasks)
        drained = time.perf_counter() - started
        memory.append(server.rss_mib())
        recovery = None
        stop = time.perf_counter()
        while time.perf_counter() - stop < 120:
            outcome, took = await ask(session, server.port, questions[0], "probe")
            if outcome == "answered" and took < 0.5:
                recovery = time.perf_counter() - stop
                break
            await asyncio.sleep(0.2)
        return results, sent, drained, recovery


def run_open(args, overload: bool) -> str:
    import random

    questions = pool()
    random.Random(0).shuffle(questions)  # short and long questions mixed, as they arrive (not all long ones last)
    server = Server()
    memory: list[float] = []
    load = os.getloadavg()[0]
    try:
        results, sent, drained, recovery = asyncio.run(open_loop(server, questions, args.rate, args.seconds, memory))
    finally:
        server.stop()
    counts = Counter(o for o, _ in results)
    answered = sorted(t for o, t in results if o == "answered")
    busy = sorted(t for o, t in results if o == "busy")
    print(counts, f"p95 {pct(answered, 0.95):.3f}", file=sys.stderr)
    name = "overload" if overload else "open"
    command = f"python -m bench.capacity {name} --rate {args.rate:g} --seconds {args.seconds:g}"
    lines = [HEADINGS[name], "", header(command, load), "",
             f"{len(results)} questions (golden, dev and portal-dev, shuffled) sent to POST /api/ask at {args.rate:g} a "
             f"second for {args.seconds:g} s "
             f"(sent in {sent:.1f} s), each from its own citizen, whatever the answers took; the server is "
             "`python -m bot serve` with the shipped settings and the per-citizen and per-address limits off.", "",
             "| answered | busy replies | errors | answered p50 | answered p95 | busy reply p95 | all replied after |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             f"| {counts['answered']} | {counts['busy']} | {counts['error']} | {pct(answered, 0.5) * 1000:.0f} ms | "
             f"{pct(answered, 0.95) * 1000:.0f} ms | {pct(busy, 0.95) * 1000:.0f} ms | {drained:.1f} s |", ""]
    lines.append(f"Server memory (resident): {memory[0]:.0f} MiB warm, at most {max(memory):.0f} MiB during the run, "
                 f"{memory[-1]:.0f} MiB after. After the last reply a lone question was answered in under 0.5 s "
                 + (f"{recovery:.1f} s later." if recovery is not None else "— never, within 120 s."))
    return "\n".join(lines) + "\n"


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def header(command: str, load: float | None = None) -> str:
    load = os.getloadavg()[0] if load is None else load
    return (f"Produced by `{command}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, Python "
            f"{platform.python_version()}, {os.cpu_count()} cores, load average {load:.1f} at the start: a shared "
            "machine, figures vary run to run).")


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace (or append) one section of a Markdown file."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _m: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("desk")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--per-user", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", action="store_true", help="also batched with the encoder on a thread, not a process")
    sub.add_parser("same")
    for name, rate, seconds in (("open", 50, 60), ("overload", 1000, 30)):
        p = sub.add_parser(name)
        p.add_argument("--rate", type=float, default=rate)
        p.add_argument("--seconds", type=float, default=seconds)
    for p in sub.choices.values():
        p.add_argument("--write", action="store_true", help="write the figures into BENCHMARKS.md "
                                                            "(overload: RELIABILITY.md)")
    args = parser.parse_args(argv)
    if args.what == "desk":
        section = run_desk(args)
    elif args.what == "same":
        section = run_same(args)
    else:
        section = run_open(args, overload=args.what == "overload")
    print(section)
    if args.write:
        target = "RELIABILITY.md" if args.what == "overload" else "BENCHMARKS.md"
        write_section(ROOT / target, HEADINGS[args.what], section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
