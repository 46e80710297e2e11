"""Questions about procedures the base does not hold: label them, fit the coverage model, report on the held-out part.

    python -m bench.coverage ../shared/data/portal-faq-train.tsv --portal-dev ../shared/eval/portal-dev.tsv [--write]

Labels. Every question of the portal FAQ file is linked to procedures outside the crawled records. A question is
still *covered* when one of its linked procedures has an equivalent record in the base: the same name once its
level ("cấp tỉnh", "cấp xã"…), notes in parentheses and a leading "Thủ tục" are left out
(`bot.importers.names.name_key`); that record is then the right answer. Every other question is *uncovered*:
the right outcome is "not in the base", or the name-only listing of its own procedure (`--import-names`).

Splits. Rows with `faq_id % 5 == 0` are held out: never imported as names, never fitted on, only reported (the
encoder issue uses the same split). The model is fitted on the other rows' uncovered questions (negatives), the
even half of portal-dev, the curated FAQ leave-one-out questions and bench/golden.tsv's in-domain questions
(positives); the odd half of portal-dev is only reported. The threshold is the lowest probability that keeps the
fitting half of portal-dev's correctly answered questions answered (at most `--cost` of them lost).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

from bench.fit import fit_logistic, training_questions
from bench.quality import load_cases
from bot.engine.features import COVERAGE_FEATURES, WEIGHTS_FILE
from bot.engine.retrieval import DECLINE_BELOW
from bot.importers.names import held_out, name_key, read_faq


@dataclass
class Case:
    """A question, what answers it, and what the bot found."""

    question: str
    targets: set[str]  # entry ids or codes that answer it (empty: nothing in the base does)
    codes: set[str]  # its linked procedures' codes (listings that route it right)
    group: str
    x: np.ndarray | None = None
    confidence: float = 0.0
    top: str = ""
    top_topics: tuple[str, ...] = ()
    listing: str = ""


def label_faq(path: str, entries) -> list[Case]:
    """The portal FAQ questions, covered (with their equivalent records) or not, in their split."""
    by_name: dict[str, set[str]] = {}
    for e in entries.values():
        if e.kind == "procedure":
            by_name.setdefault(name_key(e.title), set()).add(e.id)
    cases = []
    for row in read_faq(__import__("pathlib").Path(path)):
        codes = [c.strip() for c in row["codes"].split(",") if c.strip()]
        names = row["procedure_names"].split(" | ")
        equivalent = set().union(*[by_name.get(name_key(n), set()) for n in names]) if names else set()
        split = "held-out" if held_out(int(row["faq_id"])) else "fit"
        kind = "covered" if equivalent else "uncovered"
        cases.append(Case(row["question"], equivalent, set(codes), f"faq {split} {kind}"))
    return cases


def collect(retriever, cases: list[Case]) -> None:
    """Search each question once; keep the coverage evidence, the confidence, the top entry and listing."""
    for i, case in enumerate(cases):
        result = retriever.search(case.question, exclude=getattr(case, "exclude", frozenset()))
        case.x = np.array([result.coverage.get(n, 0.0) for n in COVERAGE_FEATURES]) if result.coverage else \
            np.zeros(len(COVERAGE_FEATURES))
        case.confidence = result.confidence
        if result.hits:
            top = retriever.data.entries[result.hits[0].entry_id]
            case.top, case.top_topics = top.id, tuple(top.topics)
        case.listing = result.listings[0].listing.code if result.listings else ""
        if i % 200 == 199:
            print(f"  {i + 1}/{len(cases)}", file=sys.stderr)


def right(case: Case) -> bool:
    """Whether the top entry answers the question."""
    return bool(case.targets & ({case.top} | set(case.top_topics)))


def outcome(case: Case, p: float, below: float) -> str:
    """What the bot does with it: answer, decline, not-held (or, when a listing fits, its listing)."""
    if case.confidence < DECLINE_BELOW:
        return "decline"
    if p < below:
        return "not-held"
    return "answer"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faq")
    parser.add_argument("--portal-dev", required=True)
    parser.add_argument("--golden", default="bench/golden.tsv")
    parser.add_argument("--ood", default="bench/ood.tsv")
    parser.add_argument("--cost", type=int, default=1, help="fitting-half portal-dev answers the threshold may lose")
    parser.add_argument("--write", action="store_true", help=f"store the model in {WEIGHTS_FILE.name}")
    parser.add_argument("--dump", help="write every case's outcome as JSON lines here")
    args = parser.parse_args(argv)
    from bot.config import load_config
    from bot.engine.assistant import Assistant

    retriever = Assistant(load_config()).load().retriever
    assert retriever is not None
    if not retriever.listing_chunks:
        print("the index holds no names: run index_builder.py --import-names first", file=sys.stderr)
    cases = label_faq(args.faq, retriever.data.entries)
    portal = load_cases(args.portal_dev)
    for i, (q, ids) in enumerate(portal):
        cases.append(Case(q, set(ids), set(), "portal-dev fit" if i % 2 == 0 else "portal-dev held-out"))
    for q, ids, exclude in training_questions(retriever):
        c = Case(q, ids, set(), "faq-loo")
        c.exclude = exclude  # type: ignore[attr-defined]
        cases.append(c)
    for q, ids in load_cases(args.golden):
        cases.append(Case(q, set(ids), set(), "golden" if ids else "ood"))
    for q, _ in load_cases(args.ood):
        cases.append(Case(q, set(), set(), "ood"))
    print(f"{len(cases)} questions", file=sys.stderr)
    collect(retriever, cases)

    fit = [c for c in cases if c.group in ("faq fit uncovered", "portal-dev fit", "faq-loo", "golden")]
    x = np.array([c.x for c in fit])
    y = np.array([c.group != "faq fit uncovered" for c in fit], dtype=float)
    w = fit_logistic(x, y)
    prob = lambda c: float(1 / (1 + np.exp(-(c.x @ w[:-1] + w[-1]))))  # noqa: E731
    kept = sorted(prob(c) for c in cases if c.group == "portal-dev fit" and c.confidence >= DECLINE_BELOW and right(c))
    below = kept[args.cost] if len(kept) > args.cost else 0.0
    print(f"coverage model: threshold {below:.4f}")
    for name, weight in zip(COVERAGE_FEATURES, w[:-1]):
        print(f"  {name:22} {weight:+.4f}")
    print(f"  {'bias':22} {w[-1]:+.4f}")

    groups: dict[str, dict[str, int]] = {}
    for c in cases:
        p = prob(c)
        what = outcome(c, p, below)
        if what == "answer":
            what = "answer (right)" if right(c) else "answer (WRONG)"
        g = groups.setdefault(c.group, {})
        g[what] = g.get(what, 0) + 1
        g["listing names it"] = g.get("listing names it", 0) + (c.listing in c.codes)
        c.outcome = what  # type: ignore[attr-defined]
        c.p = p  # type: ignore[attr-defined]
    for name in sorted(groups):
        total = sum(v for k, v in groups[name].items() if k != "listing names it")
        print(f"{name:28} {total:5}  " + ", ".join(f"{k} {v}" for k, v in sorted(groups[name].items())))
    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as f:
            for c in cases:
                f.write(json.dumps({"group": c.group, "question": c.question, "outcome": c.outcome,  # type: ignore[attr-defined]
                                    "p": round(c.p, 4), "confidence": round(c.confidence, 4), "top": c.top,  # type: ignore[attr-defined]
                                    "listing": c.listing, "codes": sorted(c.codes), "targets": sorted(c.targets)},
                                   ensure_ascii=False) + "\n")
    if args.write:
        data = json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))
        data.setdefault(retriever.profile, {})["coverage"] = {
            "weights": {**{n: round(float(v), 6) for n, v in zip(COVERAGE_FEATURES, w[:-1])}, "bias": round(float(w[-1]), 6)},
            "below": round(float(below), 6),
        }
        WEIGHTS_FILE.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        print(f"wrote the {retriever.profile} coverage model into {WEIGHTS_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
