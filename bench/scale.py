"""Scale-out: `python -m bot serve` with 1 and 2 workers, over SQLite and over PostgreSQL, in one run.

    python -m bench.scale [--users 40] [--per-user 5] [--crowd 1000] [--crowd-per-user 10] [--write]

A private PostgreSQL 15 cluster is started for the run (tests/pg.py; as root through `runuser -u postgres`). The
index and model of the project's data folder serve; logs and state go to a temporary data folder. For each setup
(SQLite × 1 worker, PostgreSQL × 1 worker, PostgreSQL × 2 workers) `users` citizens ask `per_user` questions each,
all at once, each waiting for its answer before asking the next (closed loop, like tools/web_load.py); answered per
second, p50 and p95 wait and busy replies are counted, and each worker's resident memory (with its encoder process)
is read from /proc. SQLite × 2 workers is refused by `serve` (its conversations and limits live in one process).

Then the crowd: `crowd` citizens × `crowd_per_user` questions through 2 workers over PostgreSQL, 32 in flight at a
time, every question different; a busy reply is asked again after its Retry-After, as the web chat does. Every
question must be answered exactly once: one 200 with an answer per question, one row per question in the log.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bot.config import ROOT, load_config

SHARED = ROOT.parent / "shared"
HEADING = "## Scale-out: workers over SQLite and PostgreSQL"


def questions() -> list[str]:
    """Citizens' questions: the golden set's."""
    path = ROOT / "bench" / "golden.tsv"
    return [line.split("\t")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


class Server:
    """`python -m bot serve [--workers N]` on a free port."""

    def __init__(self, data_dir: Path, workers: int, url: str = "", extra: dict[str, str] | None = None):
        self.port = free_port()
        env = dict(os.environ, CCHC_DATA_DIR=str(data_dir), CCHC_WEB_PORT=str(self.port), CCHC_WEB_LISTEN="127.0.0.1",
                   CCHC_ANSWER_RATE_COUNT="0", CCHC_WEB_IP_RATE_COUNT="0", LOG_HASH_KEY="bench-scale-key",
                   HF_HUB_OFFLINE="1", **(extra or {}))
        if url:
            env["CCHC_STORE_URL"] = url
        command = [sys.executable, "-m", "bot", "serve"] + (["--workers", str(workers)] if workers > 1 else [])
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=self.log)
        self.workers = workers
        self.pids: set[int] = set()
        deadline = time.monotonic() + 600
        while len(self.pids) < workers:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise RuntimeError(f"serve did not start:\n{self.log.read().decode(errors='replace')[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                body = json.loads(response.read())
                if response.status == 200:
                    self.pids.add(body["worker"])
                conn.close()
            except OSError:
                time.sleep(0.5)

    def memory(self) -> list[int]:
        """MiB resident per worker (with its children: the encoder process)."""
        return [round((rss_kb(pid) + sum(rss_kb(c) for c in children(pid))) / 1024) for pid in sorted(self.pids)]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def closed_loop(port: int, qs: list[str], users: int, per_user: int, tag: str) -> dict:
    """`users` citizens at once, each asking `per_user` questions one after another."""
    waits: list[float] = []
    busy, errors, lock = [0], [0], threading.Lock()

    def citizen(u: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for k in range(per_user):
            body = json.dumps({"question": qs[(u * per_user + k) % len(qs)], "user": f"{tag}{u}"})
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/ask", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = json.loads(response.read())
            except (OSError, ValueError):
                with lock:
                    errors[0] += 1
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                continue
            with lock:
                if response.status == 503 or data.get("busy"):
                    busy[0] += 1
                elif response.status == 200:
                    waits.append(time.perf_counter() - started)
                else:
                    errors[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=citizen, args=(u,)) for u in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    waits.sort()
    return {"answered": len(waits), "busy": busy[0], "errors": errors[0], "seconds": round(seconds, 1),
            "per_s": round(len(waits) / seconds, 1), "p50": round(statistics.median(waits), 3) if waits else None,
            "p95": round(waits[int(0.95 * (len(waits) - 1))], 3) if waits else None}


def crowd(port: int, citizens: int, per_user: int, qs: list[str], in_flight: int = 32) -> dict:
    """Every question of `citizens` × `per_user` asked until answered (busy replies asked again after Retry-After),
    each citizen's questions in order, `in_flight` citizens at a time."""
    todo: queue.Queue[int] = queue.Queue()
    for u in range(citizens):
        todo.put(u)
    answered: dict[str, int] = {}
    ids: dict[str, int] = {}
    busy, errors, lock = [0], [0], threading.Lock()
    waits: list[float] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            try:
                u = todo.get_nowait()
            except queue.Empty:
                return
            for k in range(per_user):
                question = f"{qs[(u * per_user + k) % len(qs)]} (câu {u}-{k})"
                while True:
                    body = json.dumps({"question": question, "user": f"crowd{u}"})
                    started = time.perf_counter()
                    try:
                        conn.request("POST", "/api/ask", body, {"Content-Type": "application/json"})
                        response = conn.getresponse()
                        data = json.loads(response.read())
                    except (OSError, ValueError):
                        with lock:
                            errors[0] += 1
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                        time.sleep(1)
                        continue  # not acknowledged: asked again
                    if response.status == 503 or data.get("busy"):
                        with lock:
                            busy[0] += 1
                        time.sleep(min(5, int(response.getheader("Retry-After") or 1)))
                        continue
                    with lock:
                        answered[question] = answered.get(question, 0) + 1
                        if data.get("question_id") is not None:
                            ids[question] = data["question_id"]
                        waits.append(time.perf_counter() - started)
                    break

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(in_flight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    waits.sort()
    return {"asked": citizens * per_user, "answered": len(answered), "answered_twice": sum(1 for v in answered.values()
                                                                                          if v > 1),
            "busy_retried": busy[0], "errors_retried": errors[0], "seconds": round(seconds, 1),
            "per_s": round(len(answered) / seconds, 1), "p95": round(waits[int(0.95 * (len(waits) - 1))], 3),
            "questions": set(answered)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--per-user", type=int, default=5)
    parser.add_argument("--crowd", type=int, default=1000)
    parser.add_argument("--crowd-per-user", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="append the results to BENCHMARKS.md")
    args = parser.parse_args(argv)
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))  # stop the servers and the cluster on the way out
    sys.path.insert(0, str(ROOT))
    from tests.pg import PASSWORD, Postgres

    cfg = load_config()
    qs = questions()
    data = Path(tempfile.mkdtemp(prefix="cchc-scale-"))
    for name in ("index", "models", "cache"):
        if (cfg.data_dir / name).exists():
            (data / name).symlink_to(cfg.data_dir / name, target_is_directory=True)
    pg = Postgres()
    os.environ["PGPASSWORD"] = PASSWORD
    rows: list[tuple[str, int, dict, list[int]]] = []
    try:
        for backend, workers in (("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2)):
            url = pg.create_database(f"bench_{workers}") if backend == "PostgreSQL" else ""
            shutil.rmtree(data / "log", ignore_errors=True)
            server = Server(data, workers, url)
            try:
                closed_loop(server.port, qs, 4, 2, "warm")  # the encoder warms up
                result = closed_loop(server.port, qs, args.users, args.per_user, f"{backend}{workers}-")
                memory = server.memory()
            finally:
                server.stop()
            rows.append((backend, workers, result, memory))
            print(backend, workers, result, memory, flush=True)
        url = pg.create_database("bench_crowd")
        server = Server(data, 2, url)
        try:
            result = crowd(server.port, args.crowd, args.crowd_per_user, qs)
            memory = server.memory()
        finally:
            server.stop()
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            logged = [q for (q,) in conn.execute("SELECT question FROM questions WHERE user_key IS NOT NULL "
                                                 "AND kind <> 'busy'").fetchall()]
        asked = result.pop("questions")
        crowd_logged = [q for q in logged if "(câu " in q]
        result["logged_rows"] = len(crowd_logged)
        result["logged_twice"] = len(crowd_logged) - len(set(crowd_logged))
        result["missing_from_log"] = len(asked - set(crowd_logged))
        print("crowd", result, memory, flush=True)
    finally:
        pg.close()
        shutil.rmtree(data, ignore_errors=True)
    lines = [HEADING, "", f"`python -m bench.scale --users {args.users} --per-user {args.per_user} --crowd {args.crowd} "
             f"--crowd-per-user {args.crowd_per_user}` on {platform.node() or 'this machine'}, "
             f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, machine shared with other jobs; one run.", "",
             "| store | workers | answered | busy | errors | seconds | answered/s | p50 s | p95 s | MiB per worker |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for backend, workers, r, memory in rows:
        lines.append(f"| {backend} | {workers} | {r['answered']} | {r['busy']} | {r['errors']} | {r['seconds']} | "
                     f"{r['per_s']} | {r['p50']} | {r['p95']} | {', '.join(map(str, memory))} |")
    lines.append("| SQLite | 2 | refused by `serve` (state in one process) | | | | | | | |")
    lines += ["", f"Crowd through 2 workers over PostgreSQL: {json.dumps(result, ensure_ascii=False)}; "
              f"MiB per worker {', '.join(map(str, memory))}.", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with (ROOT / "BENCHMARKS.md").open("a", encoding="utf-8") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
