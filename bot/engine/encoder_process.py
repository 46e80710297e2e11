"""The question encoder in a process of its own, for answers run side by side.

Answers run on several threads of one process, and the Python parts of each (full-text search, features, composing)
hold the interpreter lock. The encoder's own Python work (tokenising, one call per layer) needs that lock between
its matrix products, so with eight answer threads it waits for the lock over and over. Measured on the 2-core
machine on 2026-12-05 (40 citizens × 5 questions, the other core busy): with the encoder on a thread, 200 questions
in 50 batches took 34 s of encoding, about what they took one by one; in its own process, 27 s, and the desk
answered 7.2 questions a second against 5.7 (`python -m bench.capacity desk --threads` compares the two). In a
process of its own the encoder has its own lock and its own core; only the texts and the vectors cross the pipe.

The child loads the encoder the config names (`load_encoder(cfg, serving=True)`) and answers one batch at a time.
If it dies, the batch being encoded fails, and the next batch starts a new child.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger("bot.engine")


class EncoderProcessError(RuntimeError):
    """The encoder process failed or stopped while encoding a batch."""


def _serve(cfg, conn) -> None:
    """The child: load the encoder, then encode each batch received until told to stop (None)."""
    from .encoder import load_encoder

    try:
        encoder = load_encoder(cfg, serving=True)
    except Exception as e:  # the parent raises it at the first batch
        conn.send(("error", f"{e.__class__.__name__}: {e}"))
        return
    conn.send(("ready", encoder.dim))
    while True:
        try:
            texts = conn.recv()
        except (EOFError, OSError):
            return
        if texts is None:
            return
        try:
            conn.send(("ok", encoder.encode(texts, role="query", batch_size=max(1, len(texts)))))
        except Exception as e:
            conn.send(("error", f"{e.__class__.__name__}: {e}"))


class EncoderProcess:
    """`encode(texts)` → the questions' vectors, computed in a child process (started now, restarted if it dies)."""

    def __init__(self, cfg, start_timeout: float = 300.0):
        self.cfg = cfg
        self.start_timeout = start_timeout
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads and torch
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self.restarts = -1
        with self._lock:
            self._start()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(self.cfg, child), name="cchc-encoder", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self.restarts += 1
        if not parent.poll(self.start_timeout):
            self._stop()
            raise EncoderProcessError(f"the encoder process did not start within {self.start_timeout:.0f} s")
        try:
            status, payload = parent.recv()
        except (EOFError, OSError) as e:
            self._stop()
            raise EncoderProcessError("the encoder process stopped while loading the model") from e
        if status != "ready":
            self._stop()
            raise EncoderProcessError(f"the encoder process could not load the model: {payload}")
        self.dim = int(payload)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                log.warning("tiến trình mã hóa câu hỏi đã dừng; khởi động lại")
                self._stop()
                self._start()
            try:
                self._conn.send(list(texts))
                status, payload = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as e:
                self._stop()
                raise EncoderProcessError("the encoder process stopped while encoding") from e
        if status != "ok":
            raise EncoderProcessError(payload)
        return payload

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _stop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except (OSError, ValueError):
                pass
            self._conn.close()
        if self._proc is not None:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        self._proc = self._conn = None

    def close(self) -> None:
        with self._lock:
            self._stop()
