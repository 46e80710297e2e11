"""Ranking levers tried on the national import, each fitted on one half of portal-dev and scored on the other.

    python -m bench.levers ../shared/eval/portal-dev.tsv

Every question's candidates and features are collected once (the serving index, the real encoder); each lever
adds candidate features or changes the fitting, is fitted on the FAQ leave-one-out questions and the even half
of the portal questions (as `python -m bench.fit --portal-dev` does) and scored on the odd half (held out) and on
all of them. Figures are of the ranking (the first relevant entry among the top 1 / 3 candidates), before the
confidence model declines anything; `python -m bench.quality` gives the answers' figures.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from functools import cached_property

import numpy as np

from bench.fit import fit_ranking, hit_at_1, hit_at_3, relevant, training_questions
from bench.quality import load_cases
from bot.engine.chunks import NAME, QUESTION
from bot.engine.features import VARIANTS
from bot.engine.question import STOPWORDS
from bot.engine.retrieval import FEATURES, Retriever
from bot.engine.text import clean, fold, syllables

# The administrative level a question names: commune, district, province, ministry.
LEVEL_WORDS = {
    "xa": re.compile(r"\b(?:xã|phường|thị trấn)\b(?! hội)", re.I),
    "huyen": re.compile(r"\b(?:huyện|quận|thị xã)\b", re.I),
    "tinh": re.compile(r"\b(?:tỉnh|Sở|thành phố trực thuộc)\b"),
    "bo": re.compile(r"\bBộ [A-ZĐ]|\bCục\b|\bTổng cục\b|[Tt]rung ương|\bBộ trưởng\b"),
}
# Lead-ins of letters to the portal that say nothing about the procedure.
LEAD_IN = re.compile(
    r"^\s*(?:(?:kính gửi|kính thưa)[^,.:;?]*[,.:;]\s*|(?:đề nghị|xin|vui lòng)?\s*(?:quý cơ quan\s*)?"
    r"cho (?:tôi |em |chúng tôi )?(?:hỏi|biết)\s*[:,]?\s*|xin hỏi\s*[:,]?\s*|(?:ông|bà|ông/bà|ông bà)\s*cho "
    r"(?:tôi )?biết\s*[:,]?\s*)+", re.I)

Feature = Callable[[Retriever, str, str], float]
TREES = "gradient-boosted trees (depth 2, 200 rounds) over the twelve features"


def question_levels(question: str) -> set[str]:
    """Levels the question names ("UBND xã", "Sở", "Bộ Tư pháp"…)."""
    return {level for level, pattern in LEVEL_WORDS.items() if pattern.search(question)}


def entry_levels(retriever: Retriever, entry_id: str) -> set[str]:
    """Levels that carry out a procedure, from its cap_thuc_hien and agency."""
    meta = retriever.data.entries[entry_id].meta
    levels = fold(str(meta.get("cap_thuc_hien", ""))).lower()
    out = {name for name, word in (("xa", "cap xa"), ("tinh", "cap tinh"), ("bo", "cap bo")) if word in levels}
    if re.search(r"huyện|quận", str(meta.get("co_quan_thuc_hien", "")), re.I):
        out.add("huyen")
    return out


def level_agreement(retriever: Retriever, question: str, entry_id: str) -> float:
    """+1 when the entry is carried out at a level the question names, −1 when not, 0 when either is silent."""
    asked, done = question_levels(question), entry_levels(retriever, entry_id)
    return 0.0 if not asked or not done else 1.0 if asked & done else -1.0


def _title(retriever: Retriever, entry_id: str) -> list[str]:
    return [w for w in retriever.folded_titles.get(entry_id, "").split() if w not in STOPWORDS]


def title_extra(retriever: Retriever, question: str, entry_id: str) -> float:
    """Title syllables the question does not use (a longer, more specific variant than asked for)."""
    asked = set(syllables(question))
    return float(sum(1 for w in set(_title(retriever, entry_id)) if w not in asked))


def title_length(retriever: Retriever, question: str, entry_id: str) -> float:
    """log(1 + syllables in the title)."""
    return float(np.log1p(len(retriever.folded_titles.get(entry_id, "").split())))


def title_bm25(retriever: Retriever, question: str, entry_id: str, k: float = 1.2, b: float = 0.75) -> float:
    """BM25 of the question over the title alone (the name field of a per-field BM25F)."""
    asked, words = set(syllables(question)), _title(retriever, entry_id)
    lengths = [len(t.split()) for t in retriever.folded_titles.values()] or [1]
    norm = 1 - b + b * len(words) / (sum(lengths) / len(lengths))
    ids = [retriever.vocab[w] for w in set(words) if w in asked and w in retriever.vocab]
    return float(sum(retriever.idf[i] * (k + 1) / (1 + k * norm) for i in ids))


def _variants(question: str, title: str) -> tuple[int, int, int]:
    q, n = f" {' '.join(syllables(question))} ", f" {title} "
    return (sum(f" {v} " in q and f" {v} " in n for v in VARIANTS), sum(f" {v} " in n and f" {v} " not in q
            for v in VARIANTS), sum(f" {v} " in q and f" {v} " not in n for v in VARIANTS))


def variant_split(i: int) -> Feature:
    """One of the three counts variant_agreement sums: both name it, only the entry, only the question."""
    return lambda r, q, e: float(_variants(q, r.folded_titles.get(e, ""))[i])


class DenseEvidence:
    """Dense-score levers that need the question's vector and every chunk of an entry, not only its best one.

    The question is encoded as `Retriever.candidates` encodes it (diacritics restored, expansions appended), once.
    """

    def __init__(self, retriever: Retriever, hub_k: int = 20):
        self.r = retriever
        self.hub_k = hub_k
        self._vectors: dict[str, np.ndarray] = {}

    @cached_property
    def hub(self) -> np.ndarray:
        """Hubness (as in CSLS): each chunk's mean cosine to its hub_k nearest question-like vectors (entry names and
        FAQ questions, all in the index). A chunk close to every question is worth less when it is close to this one.
        """
        vectors, sections = self.r.vectors, self.r.data.chunk_section
        background = vectors[[i for i, s in enumerate(sections) if s in (NAME, QUESTION)]]
        hub = np.zeros(len(vectors), dtype=np.float32)
        k = min(self.hub_k, background.shape[0] - 1)
        for start in range(0, len(vectors), 2048):
            sims = vectors[start : start + 2048] @ background.T
            hub[start : start + 2048] = -np.partition(-sims, k, axis=1)[:, :k].mean(axis=1)
        return hub

    def vector(self, question: str, last_sentence: bool = False) -> np.ndarray:
        if last_sentence:
            sentences = [s for s in re.split(r"(?<=[.?!;])\s+", clean(question)) if len(s) > 15]
            question = sentences[-1] if len(sentences) > 1 else question
        key = f"{last_sentence}\0{question}"
        if key not in self._vectors:
            self._vectors[key] = self.r.encoder.encode([self.r.analyse(question).dense_text], role="query")[0]
        return self._vectors[key]

    def passages(self, entry_id: str) -> np.ndarray:
        names, passages = self.r.entry_chunks.get(entry_id, ([], []))
        return np.array(passages or names, dtype=np.int64)

    def hub_corrected(self, weight: float) -> Feature:
        """Best passage by cosine − weight × the passage's hubness."""
        def feature(r: Retriever, question: str, entry_id: str) -> float:
            chunks = self.passages(entry_id)
            return float((r.vectors[chunks] @ self.vector(question) - weight * self.hub[chunks]).max(initial=0.0))
        return feature

    def top2_mean(self, r: Retriever, question: str, entry_id: str) -> float:
        """Mean of the entry's two best passages (evidence from more than one section)."""
        scores = np.sort(r.vectors[self.passages(entry_id)] @ self.vector(question))[::-1]
        return float(scores[:2].mean()) if len(scores) else 0.0

    def asked_section(self, r: Retriever, question: str, entry_id: str) -> float:
        """Best passage among the sections the question asks about (hồ sơ, thời hạn…), else the best passage."""
        from bot.engine.question import detect_aspects

        chunks = self.passages(entry_id)
        asked = set(detect_aspects(question))
        within = [c for c in chunks if r.data.chunk_section[c] in asked] or list(chunks)
        return float((r.vectors[within] @ self.vector(question)).max(initial=0.0))

    def last_sentence(self, r: Retriever, question: str, entry_id: str) -> float:
        """Best chunk for the last sentence of a long question (letters put their question last), encoded apart."""
        names, passages = r.entry_chunks.get(entry_id, ([], []))
        chunks = np.array(names + passages, dtype=np.int64)
        return float((r.vectors[chunks] @ self.vector(question, last_sentence=True)).max(initial=0.0))


def question_length(question: str) -> float:
    """Syllables of the question, up to 40, over 10: portal letters are long, citizens' questions short."""
    return min(len(syllables(question)), 40) / 10


def imported_by_length(r: Retriever, question: str, entry_id: str) -> float:
    """An imported record, weighted by the question's length (formal letters ask about official records)."""
    return question_length(question) if entry_id in r.imported else 0.0


def curated_name_coverage(r: Retriever, question: str, entry_id: str) -> float:
    """Share of the question's words in a curated entry's name (0 for imported records): curated entries, written
    for citizens, match any conversational question densely; their names say whether they are about it."""
    if entry_id in r.imported:
        return 0.0
    asked = set(syllables(question))
    words = _title(r, entry_id)
    return sum(1 for w in words if w in asked) / len(words) if words else 0.0


def fit_trees(sets: list[list], set_weights: tuple[float, ...]):
    """Gradient-boosted trees on the candidates' features (pointwise: is this candidate relevant), sets weighted."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    xs, ys, ws = [], [], []
    for groups, weight in zip(sets, set_weights):
        kept = [(x, y) for x, y in groups if len(x)]
        for x, y in kept:
            xs.append(x)
            ys.append(y)
            ws.append(np.full(len(y), weight / len(kept)))
    model = HistGradientBoostingClassifier(max_depth=2, max_iter=200, learning_rate=0.05, random_state=0)
    weights = np.concatenate(ws)  # scaled to a mean of 1: tiny weights starve the trees' minimum hessian per leaf
    return model.fit(np.vstack(xs), np.concatenate(ys), sample_weight=weights / weights.mean())


def fit_softmax(sets: list[list], set_weights: tuple[float, ...], l2: float = 1.0) -> np.ndarray:
    """Linear weights maximising the softmax likelihood of the relevant candidates (sets weighted, L2)."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    data = []
    for groups, weight in zip(sets, set_weights):
        kept = [(x, y) for x, y in groups if len(x) and y.any()]
        data += [(x, y, weight / len(kept)) for x, y in kept]
    stacked = np.vstack([x for x, _, _ in data])
    mean, std = stacked.mean(0), stacked.std(0) + 1e-9
    scaled = [((x - mean) / std, y, w) for x, y, w in data]
    total = sum(w for _, _, w in scaled)

    def loss(w):
        value, grad = 0.0, np.zeros_like(w)
        for x, y, weight in scaled:
            s = x @ w
            all_, right = logsumexp(s), logsumexp(s[y])
            value += weight * (all_ - right)
            grad += weight * (x.T @ (np.exp(s - all_) - np.where(y, np.exp(s - right), 0.0)))
        return value / total + l2 * w @ w / 2 / len(scaled), grad / total + l2 * w / len(scaled)

    w = minimize(loss, np.zeros(stacked.shape[1]), jac=True, method="L-BFGS-B").x / std
    return w / w[0] if w[0] > 0 else w


def main(argv: list[str] | None = None) -> int:
    """Print the lever table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("portal_dev")
    parser.add_argument("--fit-on", choices=("even", "odd"), default="even",
                        help="the half fitted on (the other is held out); 'odd' swaps the halves as a check")
    parser.add_argument("--only", default="", help="run only the levers whose name contains this text")
    args = parser.parse_args(argv)
    fit_half, held_half = (slice(0, None, 2), slice(1, None, 2))[:: 1 if args.fit_on == "even" else -1]
    from bot.config import load_config
    from bot.engine.assistant import Assistant

    retriever = Assistant(load_config()).load().retriever
    assert retriever is not None
    faq = training_questions(retriever)
    portal = [(q, set(ids), frozenset()) for q, ids in load_cases(args.portal_dev) if ids]
    print(f"collecting candidates of {len(faq)} FAQ and {len(portal)} portal questions…", file=sys.stderr)
    ids: dict[str, list[str]] = {}

    def gather(questions):
        """Candidate features and relevance per question (as bench.fit.collect), keeping the candidates' ids."""
        groups = []
        for question, targets, exclude in questions:
            hits = retriever.candidates(question, exclude).hits
            ids[question] = [h.entry_id for h in hits]
            x = np.array([h.features for h in hits], dtype=np.float64).reshape(len(hits), len(FEATURES))
            groups.append((x, np.array([relevant(retriever, h.entry_id, targets) for h in hits], dtype=bool)))
        return groups

    g_faq, g_portal = gather(faq), gather(portal)

    def extend(questions, groups, features: list[Feature]):
        out = []
        for (question, _, _), (x, y) in zip(questions, groups):
            if len(x) and features:
                extra = np.array([[f(retriever, question, e) for f in features] for e in ids[question]])
                x = np.hstack([x, extra])
            elif features:
                x = np.zeros((0, x.shape[1] + len(features)))
            out.append((x, y))
        return out

    current = np.array(retriever.rank_weights, dtype=float)

    def row(name: str, w: np.ndarray, portal_groups) -> None:
        held, whole = portal_groups[held_half], portal_groups
        print(f"| {name} | {hit_at_1(held, w):.3f} / {hit_at_3(held, w):.3f} | "
              f"{hit_at_1(whole, w):.3f} / {hit_at_3(whole, w):.3f} |", flush=True)

    print("| lever | held-out half hit@1 / hit@3 | all hit@1 / hit@3 |\n| --- | --- | --- |")
    row("current weights (weights.json, national)", current, g_portal)
    evidence = DenseEvidence(retriever)  # computes nothing until a lever below asks
    levers: list[tuple[str, list[Feature], bool]] = [
        ("refit by coordinate ascent, no new feature", [], False),
        ("+ level agreement (xã / huyện / tỉnh / bộ named vs the record's level)", [level_agreement], False),
        ("+ title syllables the question does not use", [title_extra], False),
        ("+ title length", [title_length], False),
        ("+ BM25 over the title alone (BM25F name field)", [title_bm25], False),
        ("+ variant words split (both / entry only / question only)", [variant_split(i) for i in range(3)], False),
        ("+ all five above", [level_agreement, title_extra, title_length, title_bm25]
         + [variant_split(i) for i in range(3)], False),
        ("softmax (listwise) fit, then coordinate ascent", [], True),
        ("softmax fit + level, title extra, title length", [level_agreement, title_extra, title_length], True),
        ("+ passage score corrected for hubness (CSLS-style, 0.5 × the chunk's mean cosine to its 20 nearest names "
         "and FAQ questions)", [evidence.hub_corrected(0.5)], False),
        ("+ the same, 1.0 × hubness", [evidence.hub_corrected(1.0)], False),
        ("+ mean of the entry's two best passages", [evidence.top2_mean], False),
        ("+ best passage of the section the question asks about", [evidence.asked_section], False),
        ("+ last sentence of a long question, encoded apart", [evidence.last_sentence], False),
        ("+ imported record × question length", [imported_by_length], False),
        ("+ curated entry × share of the question in its name", [curated_name_coverage], False),
    ]
    for name, features, softmax in levers:
        if args.only not in name:
            continue
        f_faq, f_portal = extend(faq, g_faq, features), extend(portal, g_portal, features)
        start = np.r_[current, np.zeros(len(features))]
        if softmax:
            start = fit_softmax([f_faq, f_portal[fit_half]], (0.5, 1.0))
        row(name, fit_ranking([f_faq, f_portal[fit_half]], start), f_portal)
    if args.only in TREES:
        model = fit_trees([g_faq, g_portal[fit_half]], (0.5, 1.0))
        held, whole = g_portal[held_half], g_portal
        score = lambda groups: [(model.predict_proba(x)[:, 1][:, None] if len(x) else x[:, :1], y)  # noqa: E731
                                for x, y in groups]
        print(f"| {TREES} | {hit_at_1(score(held), np.ones(1)):.3f} / {hit_at_3(score(held), np.ones(1)):.3f} | "
              f"{hit_at_1(score(whole), np.ones(1)):.3f} / {hit_at_3(score(whole), np.ones(1)):.3f} |", flush=True)
    # Query normalisation: letters' lead-ins ("Kính gửi Cục…,", "Đề nghị cho biết") dropped before searching.
    if args.only not in "lead-ins":
        return 0
    stripped = [(LEAD_IN.sub("", q) or q, t, e) for q, t, e in portal]
    row("lead-ins of letters dropped from the question (current weights)", current, gather(stripped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
