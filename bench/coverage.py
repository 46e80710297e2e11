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
from bot.engine.features import COVERAGE_FEATURES, WEIGHTS_FILE, ListingRule
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


def outcome(case: Case, p: float, below: float, rule: ListingRule) -> str:
    """What the bot does with it, as `compose_answer` decides: a listing's name, decline, not held, or an answer."""
    assert case.x is not None
    if case.listing and rule.names(dict(zip(COVERAGE_FEATURES, case.x))):
        return "listed (right)" if case.listing in case.codes else "listed (WRONG)"
    if case.confidence < DECLINE_BELOW:
        return "decline"
    if p < below:
        return "not-held"
    return "answer (right)" if right(case) else "answer (WRONG)"


def save(cases: list[Case], path: str) -> None:
    """What the search found for each question, to refit without searching again."""
    with open(path, "w", encoding="utf-8") as f:
        for c in cases:
            f.write(json.dumps({"q": c.question, "t": sorted(c.targets), "c": sorted(c.codes), "g": c.group,
                                "x": [float(v) for v in c.x], "conf": c.confidence, "top": c.top,  # type: ignore[union-attr]
                                "topics": list(c.top_topics), "listing": c.listing}, ensure_ascii=False) + "\n")


def load(path: str) -> list[Case]:
    """Cases saved by `save`."""
    out = []
    for line in open(path, encoding="utf-8"):
        d = json.loads(line)
        out.append(Case(d["q"], set(d["t"]), set(d["c"]), d["g"], np.array(d["x"]), d["conf"], d["top"],
                        tuple(d["topics"]), d["listing"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("faq")
    parser.add_argument("--portal-dev", required=True)
    parser.add_argument("--golden", default="bench/golden.tsv")
    parser.add_argument("--ood", default="bench/ood.tsv")
    parser.add_argument("--cost", type=int, default=1, help="fitting-half portal-dev answers the threshold may lose")
    parser.add_argument("--write", action="store_true", help=f"store the model in {WEIGHTS_FILE.name}")
    parser.add_argument("--dump", help="write every case's outcome as JSON lines here")
    parser.add_argument("--found", help="what the searches found: read from this file if it exists, else written to it")
    args = parser.parse_args(argv)
    from bot.config import load_config
    from bot.engine.assistant import Assistant

    retriever = Assistant(load_config()).load().retriever
    assert retriever is not None
    if not retriever.listing_chunks:
        print("the index holds no names: run index_builder.py --import-names first", file=sys.stderr)
    if args.found and __import__("os").path.exists(args.found):
        cases = load(args.found)
    else:
        cases = search_all(retriever, args)
        if args.found:
            save(cases, args.found)
    report(cases, retriever.profile, args)
    return 0


def search_all(retriever, args) -> list[Case]:
    """Every question of every set, labelled, searched once."""
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
    return cases


def fit_listing_rule(cases: list[Case], cost: int) -> ListingRule:
    """The rule that names the most fitting-set uncovered questions' own procedure, firing on at most `cost`
    fitting-half portal-dev questions and on no golden or out-of-domain question."""
    def fires(rule: ListingRule, c: Case) -> bool:
        return bool(c.listing) and rule.names(dict(zip(COVERAGE_FEATURES, c.x)))  # type: ignore[arg-type]

    best, best_gain = ListingRule(), -1
    grid = [(a, b, c, d) for a in (0.0, 0.01, 0.02, 0.03, 0.05) for b in (0.0, 0.1, 0.2, 0.3)
            for c in (0.5, 0.6, 0.7, 0.8) for d in (0.0, 0.86, 0.88, 0.90)]
    for dense_margin, words_margin, words, dense in grid:
        rule = ListingRule(dense_margin, words_margin, words, dense)
        if sum(fires(rule, c) for c in cases if c.group == "portal-dev fit") > cost:
            continue
        if any(fires(rule, c) for c in cases if c.group in ("golden", "ood")):
            continue
        gain = sum(fires(rule, c) and c.listing in c.codes for c in cases if c.group == "faq fit uncovered")
        if gain > best_gain:
            best, best_gain = rule, gain
    return best


def report(cases: list[Case], profile: str, args) -> None:
    """Fit on the fitting sets, choose the threshold, print what the bot would do with every set."""
    rule = fit_listing_rule(cases, args.cost)
    print(f"listing rule: {rule}")
    fit = [c for c in cases if c.group in ("faq fit uncovered", "portal-dev fit", "faq-loo", "golden")]
    x = np.array([c.x for c in fit])
    y = np.array([c.group != "faq fit uncovered" for c in fit], dtype=float)
    w = fit_logistic(x, y)
    prob = lambda c: float(1 / (1 + np.exp(-(c.x @ w[:-1] + w[-1]))))  # noqa: E731
    kept = sorted(prob(c) for c in cases if c.group == "portal-dev fit" and c.confidence >= DECLINE_BELOW and right(c)
                  and outcome(c, 1.0, 0.0, rule).startswith("answer"))
    below = kept[args.cost] if len(kept) > args.cost else 0.0
    print(f"coverage model: threshold {below:.4f}")
    for name, weight in zip(COVERAGE_FEATURES, w[:-1]):
        print(f"  {name:22} {weight:+.4f}")
    print(f"  {'bias':22} {w[-1]:+.4f}")

    groups: dict[str, dict[str, int]] = {}
    for c in cases:
        p = prob(c)
        what = outcome(c, p, below, rule)
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
        data.setdefault(profile, {})["coverage"] = {
            "weights": {**{n: round(float(v), 6) for n, v in zip(COVERAGE_FEATURES, w[:-1])}, "bias": round(float(w[-1]), 6)},
            "below": round(float(below), 6),
            "listing": {"dense_margin": rule.dense_margin, "words_margin": rule.words_margin, "words": rule.words,
                        "dense": rule.dense},
        }
        WEIGHTS_FILE.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        print(f"wrote the {profile} coverage model into {WEIGHTS_FILE}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
