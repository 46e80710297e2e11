"""Retrieval quality in one process: hit@1, hit@3, MRR@5, declines — the figures of ../shared/eval/score.py.

    python -m bench.quality bench/golden.tsv ../shared/eval/dev.tsv [--show-misses]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bot.engine.answer import Answer


def load_cases(path: str | Path) -> list[tuple[str, list[str]]]:
    """Question files: question, a tab, expected ids (comma-separated) or '-' for a decline."""
    cases = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        question, _, expect = line.partition("\t")
        if not expect:
            raise ValueError(f"{path}:{n}: no expected ids after a tab")
        ids = [] if expect.strip() == "-" else [e.strip() for e in expect.split(",") if e.strip()]
        cases.append((question, ids))
    return cases


def rank_of(answer: Answer, expected: list[str]) -> int | None:
    """Rank of the first source whose id or topics match, as score.py counts it."""
    if not answer.answered:
        return None
    for i, source in enumerate(answer.sources, 1):
        if ({source.id} | set(source.topics)) & set(expected):
            return i
    return None


@dataclass
class Score:
    """Figures for one question file."""

    inside: int = 0
    outside: int = 0
    hit1: int = 0
    hit3: int = 0
    rr: float = 0.0
    false_declines: int = 0
    declined_ok: int = 0
    misses: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The figures as score.py prints them."""
        n = max(self.inside, 1)
        return (f"hit@1 {self.hit1 / n:.3f}  hit@3 {self.hit3 / n:.3f}  mrr@5 {self.rr / n:.3f}  "
                f"false-declines {self.false_declines}/{self.inside}  declined-ok {self.declined_ok}/{self.outside}")


def score(ask, cases: list[tuple[str, list[str]]]) -> Score:
    """Ask every question with `ask(question) -> Answer` and count as score.py does."""
    s = Score()
    for question, expected in cases:
        answer = ask(question)
        if not expected:
            s.outside += 1
            if not answer.answered:  # score.py's "declined": no answer from the knowledge base
                s.declined_ok += 1
            else:
                s.misses.append(f"ANSWERED (should decline): {question} -> {answer.sources[0].id if answer.sources else ''}")
            continue
        s.inside += 1
        s.false_declines += not answer.answered
        r = rank_of(answer, expected)
        s.hit1 += r == 1
        s.hit3 += r is not None and r <= 3
        s.rr += 1 / r if r is not None and r <= 5 else 0.0
        if r != 1:
            got = [x.id for x in answer.sources[:3]]
            why = f"declined ({answer.confidence:.2f})" if not answer.answered else f"rank {r}, top {got}"
            s.misses.append(f"MISS ({why}): {question} expected {expected}")
    return s


def main(argv: list[str] | None = None) -> int:
    """Score question files against the serving index."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args(argv)
    from bot.config import load_config
    from bot.engine.assistant import Assistant

    assistant = Assistant(load_config()).load()
    for path in args.files:
        result = score(assistant.ask, load_cases(path))
        if args.show_misses:
            print("\n".join(result.misses))
        print(f"{path}: {result.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
