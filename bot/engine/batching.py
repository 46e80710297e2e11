"""Micro-batching: questions that arrive together are encoded in one batch and searched with one FAISS call.

Encoding one short question costs about as much as encoding a batch of eight (a transformer's fixed cost per call
dominates), so under load the encoder thread takes every question waiting for it, up to `max_batch`, waiting at
most `window_s` for more after the first, and answers them all at once. The rest of an answer (full-text search,
features, composing) runs on the caller's thread and never holds the encoder.

One thread owns the encoder: torch runs its matrix products on its own threads outside the GIL, while the answer
threads do the Python work on the other core.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

log = logging.getLogger("bot.batching")



class Searcher(Protocol):
    """What a batch is searched with (the retriever of one index version)."""

    def dense_vectors(self, vectors: np.ndarray) -> list:
        """One FAISS call for the encoded questions (unit rows) → one result per row."""
        ...


@dataclass
class _Request:
    text: str
    searcher: Searcher | None  # the index version to search (None: the vector alone)
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """What the batcher did, for benchmarks and /stats: batches run, questions encoded, the largest batch."""

    batches: int = 0
    questions: int = 0
    largest: int = 0
    encode_seconds: float = 0.0


class QueryBatcher:
    """Encodes questions in batches on one thread; `encode_search(text, search)` blocks until its batch is done."""

    def __init__(self, encode: Callable[[Sequence[str]], np.ndarray], window_s: float = 0.003, max_batch: int = 32):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.encode = encode
        self.window_s = max(0.0, window_s)
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._closed = False
        self._active = 0  # questions being answered now: each will ask for its vector once
        self._active_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="encoder", daemon=True)
        self._thread.start()

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Around answering one question: the encoder waits for more only while other answers are under way,
        so a question alone is never held back by the window."""
        with self._active_lock:
            self._active += 1
        try:
            yield
        finally:
            with self._active_lock:
                self._active -= 1

    def submit(self, text: str, searcher: Searcher | None = None) -> Future:
        """Queue a question for the next batch; the future gives (vector, search result or None)."""
        if self._closed:
            raise RuntimeError("the question encoder is closed")
        request = _Request(text, searcher)
        self._queue.put(request)
        return request.future

    def encode_search(self, text: str, searcher: Searcher | None = None) -> tuple[np.ndarray, object]:
        """The question's vector and its FAISS result, computed with whatever else arrived meanwhile."""
        return self.submit(text, searcher).result()

    def close(self) -> None:
        """Answer what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        """The first request and every other arriving within the window, up to max_batch; True when closing."""
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:  # whatever is already waiting, then whatever arrives before the deadline
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or len(batch) >= self._active:  # nobody else is answering: nothing more will come
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is None:
                break
            batch, closing = self._collect(first)
            self._answer(batch)

    def _answer(self, batch: list[_Request]) -> None:
        # Longest first: the tokenizer pads a batch to its longest question, and sentence-transformers sorts too.
        order = sorted(range(len(batch)), key=lambda i: -len(batch[i].text))
        started = time.perf_counter()
        try:
            vectors = self.encode([batch[i].text for i in order])
            by_request = np.empty_like(vectors)
            by_request[order] = vectors
            results: list = [None] * len(batch)
            groups: dict[int, list[int]] = {}  # one FAISS call per index version (a rebuild may land mid-batch)
            for i, request in enumerate(batch):
                if request.searcher is not None:
                    groups.setdefault(id(request.searcher), []).append(i)
            for members in groups.values():
                searcher = batch[members[0]].searcher
                assert searcher is not None
                for i, found in zip(members, searcher.dense_vectors(by_request[members])):
                    results[i] = found
        except BaseException as e:  # every waiting question gets the error, none waits forever
            log.exception("encoding a batch of %d questions failed", len(batch))
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(e)
            return
        finally:
            self.stats.encode_seconds += time.perf_counter() - started
        self.stats.batches += 1
        self.stats.questions += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        for i, request in enumerate(batch):
            request.future.set_result((by_request[i], results[i]))
