"""Fit the ranking and confidence weights of bot/retrieval.py on the knowledge base's own FAQ questions.

    python -m bench.fit

Training questions are the FAQ entries' question variants, each asked with its own FAQ left out (so it must
find what the FAQ is about); negatives for the confidence model are bench/ood.tsv. bench/golden.tsv is held
out to check both. The development set of ../shared/eval is never used here.
Prints the weights to paste into bot/retrieval.py and the held-out figures.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bench.quality import load_cases
from bot.retrieval import FEATURES, Retriever

HERE = "bench"


def training_questions(retriever: Retriever) -> list[tuple[str, set[str], frozenset[str]]]:
    """(question, ids it is about, entries to leave out) for every FAQ question variant."""
    out = []
    for entry in retriever.data.entries.values():
        if entry["kind"] != "faq":
            continue
        targets = set(entry["meta"].get("lien_quan", []))
        for question in entry["meta"].get("cau_hoi", []):
            out.append((question, targets, frozenset({entry["id"]})))
    return out


def relevant(retriever: Retriever, entry_id: str, targets: set[str]) -> bool:
    """An entry answers when it is one of the targets or an FAQ about one of them."""
    return bool(set(retriever.data.entries[entry_id]["topics"] or [entry_id]) & targets)


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


def fit_pairwise(groups, c: float = 1.0) -> np.ndarray:
    """Weights w so that w·x of a relevant candidate exceeds that of each irrelevant one (pairwise logistic)."""
    from sklearn.linear_model import LogisticRegression

    diffs = []
    for x, y in groups:
        if y.any() and (~y).any():
            pos, neg = x[y], x[~y]
            diffs.append((pos[:, None, :] - neg[None, :, :]).reshape(-1, x.shape[1]))
    d = np.vstack(diffs)
    scale = d.std(axis=0) + 1e-9
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=5000)
    model.fit(np.vstack([d / scale, -d / scale]), np.r_[np.ones(len(d)), np.zeros(len(d))])
    w = model.coef_[0] / scale
    return w / w[0]  # dense keeps weight 1: the scale is arbitrary for ranking


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


def top_features(groups, w: np.ndarray):
    """Features of each question's best candidate and whether it is relevant."""
    xs, ys = [], []
    for x, y in groups:
        if len(x):
            i = int(np.argmax(x @ w))
            xs.append(x[i])
            ys.append(bool(y[i]))
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
    args = parser.parse_args(argv)
    from bot.assistant import Assistant
    from bot.config import load_config

    retriever = Assistant(load_config()).load().retriever
    assert retriever is not None
    train = training_questions(retriever)
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
    w = fit_pairwise(g_train)
    print(f"{'questions':32} {'dense only hit@1/@3':>20} {'fitted hit@1/@3':>18}")
    for name, groups in [("training (FAQ leave-one-out…)", g_train), *g_held.items()]:
        print(f"{name:32} {hit_at_1(groups, base):>12.3f} {hit_at_3(groups, base):.3f} "
              f"{hit_at_1(groups, w):>12.3f} {hit_at_3(groups, w):.3f}")

    x_in, y_in = top_features(g_train, w)
    x_out, _ = top_features(g_ood, w)
    c = fit_logistic(np.vstack([x_in, x_out]), np.r_[y_in, np.zeros(len(x_out))])
    prob = lambda xx: 1 / (1 + np.exp(-(xx @ c[:-1] + c[-1])))  # noqa: E731
    for name, groups in g_held.items():
        xs, ys = top_features(groups, w)
        print(f"{name}: answered and right {np.mean((prob(xs) >= 0.5) & (ys > 0)):.3f}, "
              f"declined {np.mean(prob(xs) < 0.5):.3f}")
    xo, _ = top_features(g_golden_out, w)
    print(f"golden out-of-domain declined {np.mean(prob(xo) < 0.5):.3f}")
    print("RANK_WEIGHTS = (" + ", ".join(f"{v:.4g}" for v in w) + ")")
    print("CONFIDENCE_WEIGHTS = (" + ", ".join(f"{v:.4g}" for v in c) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
