"""Fit the ranking and confidence weights (bot/engine/weights.json) on the knowledge base's own FAQ questions.

    python -m bench.fit [--write]

Training questions are the FAQ entries' question variants, each asked with its own FAQ left out (so it must
find what the FAQ is about) and, with --portal-dev, every other question of the portal's FAQ (the rest is held
out). Ranking weights: coordinate ascent on hit@1 + ½·hit@3, averaged over the two question sets, from the
current weights. Confidence: logistic regression of "the top entry is right" on the top entry's features, with
bench/ood.tsv as negatives. bench/golden.tsv is held out to check both; ../shared/eval/dev.tsv is never used.
Prints the held-out figures and the weights by feature name; --write stores them in bot/engine/weights.json as the
profile in use ("curated" or "national"), which the retriever reads.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from bench.quality import load_cases
from bot.engine.features import WEIGHTS_FILE, load_weights, weights_data
from bot.engine.retrieval import FEATURES, Retriever

HERE = "bench"
CONFIDENCE_FEATURES = ("dense", "dense_passage", "dense_name", "coverage", "name_coverage", "phrase")


def training_questions(retriever: Retriever) -> list[tuple[str, set[str], frozenset[str]]]:
    """(question, ids it is about, entries to leave out) for every FAQ question variant."""
    out = []
    for entry in retriever.data.entries.values():
        if entry.kind != "faq":
            continue
        targets = set(entry.related)
        for question in entry.questions:
            out.append((question, targets, frozenset({entry.id})))
    return out


def relevant(retriever: Retriever, entry_id: str, targets: set[str]) -> bool:
    """An entry answers when it is one of the targets or an FAQ about one of them."""
    return bool(set(retriever.data.entries[entry_id].topics or [entry_id]) & targets)


def collect(retriever: Retriever, questions):
    """Features of every candidate, grouped by question, with relevance labels."""
    groups = []
    for question, targets, exclude in questions:
        result = retriever.candidates(question, exclude)
        if not result.hits:
            groups.append((np.zeros((0, len(FEATURES))), np.zeros(0, bool)))
            continue
        x = np.array([h.features for h in result.hits], dtype=np.float64)
        y = np.array([relevant(retriever, h.entry_id, targets) if targets else False for h in result.hits])
        groups.append((x, y))
    return groups


def objective(w: np.ndarray, sets: list[list]) -> float:
    """Mean over question sets of hit@1 + ½·hit@3: what the answers are judged on."""
    return sum(hit_at_1(groups, w) + 0.5 * hit_at_3(groups, w) for groups in sets) / len(sets)


def fit_ranking(sets: list[list], start: np.ndarray, rounds: int = 6) -> np.ndarray:
    """Coordinate ascent on the objective from `start`; the dense weight stays 1 (the scale is arbitrary)."""
    w, best = start.astype(float).copy(), objective(start, sets)
    steps = (-0.5, -0.2, -0.1, -0.05, -0.02, -0.01, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    for _ in range(rounds):
        improved = False
        for j in range(1, len(w)):
            for step in steps:
                trial = w.copy()
                trial[j] += step
                value = objective(trial, sets)
                if value > best + 1e-9:
                    best, w, improved = value, trial, True
        if not improved:
            break
    return w


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Logistic regression with an intercept (the last weight), on raw features."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(C=c, max_iter=5000)
    model.fit((x - mean) / std, y)
    w = model.coef_[0] / std
    return np.r_[w, model.intercept_[0] - (w * mean).sum()]


def hit_at_1(groups, w: np.ndarray) -> float:
    """Share of questions whose best-scored candidate is relevant."""
    hits = [y[np.argmax(x @ w)] if len(x) else False for x, y in groups]
    return float(np.mean(hits))


def top_features(groups, w: np.ndarray, within: int = 1):
    """Features of each question's best candidate, and whether a relevant entry is among the `within` best."""
    xs, ys = [], []
    for x, y in groups:
        if len(x):
            order = np.argsort(-(x @ w))
            xs.append(x[order[0]])
            ys.append(bool(y[order[:within]].any()))
        else:
            xs.append(np.zeros(len(FEATURES)))
            ys.append(False)
    return np.array(xs), np.array(ys, dtype=float)


def hit_at_3(groups, w: np.ndarray) -> float:
    """Share of questions with a relevant candidate among the three best-scored."""
    hits = [bool(y[np.argsort(-(x @ w))[:3]].any()) if len(x) else False for x, y in groups]
    return float(np.mean(hits))


def main(argv: list[str] | None = None) -> int:
    """Fit, report held-out figures, print the weights."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--golden", default=f"{HERE}/golden.tsv")
    parser.add_argument("--ood", default=f"{HERE}/ood.tsv")
    parser.add_argument("--portal-dev", help="portal FAQ questions: every other one is used for fitting, "
                        "the rest only for checking")
    parser.add_argument("--answered-within", type=int, default=1,
                        help="a question counts as answerable when a relevant entry is among this many best "
                             "(1 for the curated base; 3 over the national import, where near-duplicate procedures "
                             "make the first place noisy and a decline costs the citizen the three sources)")
    parser.add_argument("--write", action="store_true", help=f"store the fitted weights in {WEIGHTS_FILE.name}")
    args = parser.parse_args(argv)
    from bot.config import load_config
    from bot.engine.assistant import Assistant

    retriever = Assistant(load_config()).load().retriever
    assert retriever is not None
    train = training_questions(retriever)
    n_faq = len(train)
    golden = [(q, set(ids), frozenset()) for q, ids in load_cases(args.golden)]
    held = {"golden": [c for c in golden if c[1]]}
    if args.portal_dev:
        portal = [(q, set(ids), frozenset()) for q, ids in load_cases(args.portal_dev)]
        train += portal[::2]
        held["portal-dev, held-out half"] = portal[1::2]
    ood = [(q, set(), frozenset()) for q, _ in load_cases(args.ood)]
    print(f"training questions {len(train)}, out-of-domain {len(ood)}", file=sys.stderr)
    g_train, g_ood = collect(retriever, train), collect(retriever, ood)
    g_held = {name: collect(retriever, cases) for name, cases in held.items()}
    g_golden_out = collect(retriever, [c for c in golden if not c[1]])

    base = np.array([1.0] + [0.0] * (len(FEATURES) - 1))
    g_faq, g_portal = g_train[:n_faq], g_train[n_faq:]
    w = fit_ranking([g for g in (g_faq, g_portal) if g], np.array(retriever.rank_weights))
    print(f"{'questions':32} {'dense only hit@1/@3':>20} {'fitted hit@1/@3':>18}")
    for name, groups in [("training (FAQ leave-one-out…)", g_train), *g_held.items()]:
        print(f"{name:32} {hit_at_1(groups, base):>12.3f} {hit_at_3(groups, base):.3f} "
              f"{hit_at_1(groups, w):>12.3f} {hit_at_3(groups, w):.3f}")

    x_in, y_in = top_features(g_train, w, args.answered_within)
    x_out, _ = top_features(g_ood, w)
    # A few absolute features only: relative ones (lexical, indicator flags) do not say how sure we are.
    used = [FEATURES.index(f) for f in CONFIDENCE_FEATURES]
    fitted = fit_logistic(np.vstack([x_in, x_out])[:, used], np.r_[y_in, np.zeros(len(x_out))])
    c = np.zeros(len(FEATURES) + 1)
    c[used], c[-1] = fitted[:-1], fitted[-1]
    prob = lambda xx: 1 / (1 + np.exp(-(xx @ c[:-1] + c[-1])))  # noqa: E731
    for name, groups in g_held.items():
        xs, ys = top_features(groups, w)
        print(f"{name}: answered and right {np.mean((prob(xs) >= 0.5) & (ys > 0)):.3f}, "
              f"declined {np.mean(prob(xs) < 0.5):.3f}")
    xo, _ = top_features(g_golden_out, w)
    print(f"golden out-of-domain declined {np.mean(prob(xo) < 0.5):.3f}")
    fitted_profile = {retriever.profile: ([float(f"{v:.4g}") for v in w], [float(f"{v:.4g}") for v in c])}
    print(json.dumps(weights_data(fitted_profile), indent=2))
    if args.write:
        profiles = {name: load_weights(name) for name in json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))}
        profiles.update(fitted_profile)  # type: ignore[arg-type]
        WEIGHTS_FILE.write_text(json.dumps(weights_data(profiles), indent=2) + "\n", encoding="utf-8")
        print(f"wrote the {retriever.profile} weights into {WEIGHTS_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
