"""Ranking features by name: each is a function of what retrieval found about one candidate for one question.

A candidate's rank score is Σ weight · feature, and the confidence that the first candidate answers the question
is a logistic function of its features; the weights are data (`weights.json` beside this file), fitted by
`python -m bench.fit --write` and read by name. A new feature is one function here, added to FEATURES, then a
refit: a feature without a weight counts zero until then.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from .index import Record
from .question import Question

WEIGHTS_FILE = Path(__file__).with_name("weights.json")
BIAS = "bias"  # the confidence model's intercept
# Words that tell apart the variants of one procedure (cấp / cấp lại / gia hạn / điều chỉnh…), folded.
VARIANTS = ("cap lai", "cap doi", "gia han", "dieu chinh", "sua doi", "bo sung", "thay doi", "thu hoi", "chuyen doi",
            "cong nhan", "dang ky lai", "xoa dang ky", "tam dung", "cham dut", "giai the", "nuoc ngoai", "lan dau",
            "dinh chi", "huy bo", "xac nhan", "phe duyet", "tham dinh")


def contains(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which of `ids` are in the sorted array (a binary search: far cheaper than np.isin per candidate)."""
    if not len(sorted_ids) or not len(ids):
        return np.zeros(len(ids), dtype=bool)
    at = np.searchsorted(sorted_ids, ids).clip(max=len(sorted_ids) - 1)
    return sorted_ids[at] == ids


def share(found: np.ndarray, weights: np.ndarray) -> float:
    """Weighted share of what was found."""
    total = weights.sum()
    return float(weights[found].sum() / total) if total else 0.0


def variant_agreement(question: str, name: str) -> float:
    """+1 for each variant word both name, −1 for each only the entry's name has, −0.5 for each only the question has."""
    q, n = f" {question} ", f" {name} "
    score = 0.0
    for v in VARIANTS:
        in_q, in_n = f" {v} " in q, f" {v} " in n
        score += 1.0 if in_q and in_n else -1.0 if in_n else -0.5 if in_q else 0.0
    return score


@dataclass(frozen=True)
class Terms:
    """A question's words as the index's term ids, looked up once per question."""

    own: np.ndarray  # content syllables
    own_weights: np.ndarray  # their IDF
    phrases: np.ndarray  # telling syllable pairs
    asked: np.ndarray  # every syllable and pair, sorted unique


@dataclass(frozen=True)
class Evidence:
    """What retrieval found about one candidate entry for one question."""

    question: Question
    terms: Terms
    record: Record
    dense_name: float  # best cosine of the entry's name-like chunks (name, FAQ questions)
    dense_passage: float  # best cosine of its passages
    lexical: float  # BM25, divided by the best candidate's
    lexicon: np.ndarray  # the entry's term ids
    name_lexicon: np.ndarray  # its title and keywords' term ids
    title_words: np.ndarray  # its title's syllable ids
    title_word_idf: np.ndarray
    title_pairs: np.ndarray  # its title's telling pairs
    folded_title: str


def dense(e: Evidence) -> float:
    """The best cosine of any of the entry's chunks."""
    return max(e.dense_name, e.dense_passage)


def dense_passage(e: Evidence) -> float:
    """The best cosine of the entry's passages."""
    return e.dense_passage


def dense_name(e: Evidence) -> float:
    """The best cosine of the entry's name or FAQ questions."""
    return e.dense_name


def coverage(e: Evidence) -> float:
    """IDF-weighted share of the question's content words found anywhere in the entry."""
    return share(contains(e.lexicon, e.terms.own), e.terms.own_weights)


def name_coverage(e: Evidence) -> float:
    """IDF-weighted share of the question's content words found in the entry's title and keywords."""
    return share(contains(e.name_lexicon, e.terms.own), e.terms.own_weights)


def phrase(e: Evidence) -> float:
    """Share of the question's telling word pairs the entry contains."""
    return float(contains(e.lexicon, e.terms.phrases).mean()) if len(e.terms.phrases) else 0.0


def lexical(e: Evidence) -> float:
    """BM25 relative to the best candidate's."""
    return e.lexical


def faq(e: Evidence) -> float:
    """1 for an FAQ entry."""
    return 1.0 if e.record.kind == "faq" else 0.0


def name_in_question(e: Evidence) -> float:
    """IDF-weighted share of the entry's title syllables that the question uses."""
    return share(contains(e.terms.asked, e.title_words), e.title_word_idf)


def name_phrase_in_question(e: Evidence) -> float:
    """Share of the entry's telling title pairs that the question uses."""
    return float(contains(e.terms.asked, e.title_pairs).mean()) if len(e.title_pairs) else 0.0


def imported(e: Evidence) -> float:
    """1 for a record imported from the national portal."""
    return 1.0 if e.record.imported else 0.0


def variant(e: Evidence) -> float:
    """Whether the question and the entry's name agree on the variant (cấp lại, gia hạn…)."""
    return variant_agreement(e.question.folded, e.folded_title)


Feature = Callable[[Evidence], float]
FEATURES: tuple[Feature, ...] = (dense, dense_passage, dense_name, coverage, name_coverage, phrase, lexical, faq,
                                 name_in_question, name_phrase_in_question, imported, variant)
NAMES: tuple[str, ...] = tuple(f.__name__ for f in FEATURES)


def compute(e: Evidence) -> tuple[float, ...]:
    """Every feature of a candidate, in FEATURES order."""
    return tuple(f(e) for f in FEATURES)


class WeightsError(ValueError):
    """The weights file names a feature that does not exist, or lacks a profile."""


@cache
def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def load_weights(profile: str, path: Path = WEIGHTS_FILE) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(rank weights, confidence weights + bias) of a profile, in FEATURES order; unnamed features weigh 0."""
    data = _read(path)
    if profile not in data:
        raise WeightsError(f"{path}: no weights for profile '{profile}' (has: {', '.join(data)})")
    rank, conf = data[profile].get("rank", {}), data[profile].get("confidence", {})
    for name in [*rank, *conf]:
        if name not in NAMES and name != BIAS:
            raise WeightsError(f"{path}: [{profile}] names an unknown feature '{name}' (known: {', '.join(NAMES)})")
    return (tuple(float(rank.get(n, 0.0)) for n in NAMES),
            tuple(float(conf.get(n, 0.0)) for n in NAMES) + (float(conf.get(BIAS, 0.0)),))


def weights_data(profiles: dict[str, tuple[list[float], list[float]]]) -> dict:
    """The weights file's content for {profile: (rank weights, confidence weights + bias)}, zeros left out."""
    out = {}
    for profile, (rank, conf) in profiles.items():
        out[profile] = {
            "rank": {n: round(float(w), 6) for n, w in zip(NAMES, rank) if w},
            "confidence": {**{n: round(float(w), 6) for n, w in zip(NAMES, conf) if w}, BIAS: round(float(conf[-1]), 6)},
        }
    return out


# ----------------------------------------------------------------------------- coverage
# Whether the base holds what a question is about, not only something like it: a question on a procedure the
# base lacks often finds a sibling or namesake (a ship design appraisal finds the fishing-boat one). The evidence:
# how well the best entry's name and text cover the question's words, how much better a procedure known by name
# only (`danh-muc.tsv`) fits, and how many of the question's words the base never uses or the best entries lack.
COVERAGE_FEATURES = ("dense", "dense_name", "coverage", "name_coverage", "name_in_question", "listing_dense",
                     "listing_margin", "listing_words", "listing_words_margin", "unknown", "unmatched")


def coverage_features(top: tuple[float, ...], listing, unknown: float, unmatched: float) -> dict[str, float]:
    """The coverage evidence by name, from the best entry's ranking features and the best name-only listing."""
    f = dict(zip(NAMES, top))
    listing_dense = listing.dense if listing else 0.0
    listing_words = listing.words if listing else 0.0
    return {
        "dense": f["dense"], "dense_name": f["dense_name"], "coverage": f["coverage"],
        "name_coverage": f["name_coverage"], "name_in_question": f["name_in_question"],
        "listing_dense": listing_dense,
        "listing_margin": listing_dense - f["dense_name"] if listing else 0.0,
        "listing_words": listing_words,
        "listing_words_margin": listing_words - f["name_coverage"] if listing else 0.0,
        "unknown": unknown, "unmatched": unmatched,
    }


@dataclass(frozen=True)
class ListingRule:
    """When a name-only listing is what the question asks about: its name is at least as close as the best entry's
    (plus `dense_margin`) and as `dense`, names more of the question's words (by `words_margin`), and most of them
    (`words`)."""

    dense_margin: float = 0.0
    words_margin: float = 0.0
    words: float = 2.0  # more than all: without a fitted rule, no listing is ever named
    dense: float = 0.0  # and the listing's name is at least this close (questions on other matters are not)

    def names(self, coverage: dict[str, float]) -> bool:
        """Whether the coverage evidence says the question is about the best listing."""
        return (coverage["listing_dense"] >= max(self.dense, coverage["dense_name"] + self.dense_margin)
                and coverage["listing_words_margin"] >= self.words_margin and coverage["listing_words"] >= self.words)


def load_listing_rule(profile: str, path: Path = WEIGHTS_FILE) -> ListingRule:
    """The fitted listing rule of a profile (`bench.coverage --write`), or one that never fires."""
    rule = _read(path).get(profile, {}).get("coverage", {}).get("listing")
    return ListingRule(**rule) if rule else ListingRule()


def load_coverage(profile: str, path: Path = WEIGHTS_FILE) -> tuple[tuple[tuple[str, ...], tuple[float, ...], float], float]:
    """((names, weights, bias), threshold) of the coverage model; without one, nothing is judged not held."""
    section = _read(path).get(profile, {}).get("coverage")
    if not section:
        return (COVERAGE_FEATURES, (0.0,) * len(COVERAGE_FEATURES), 50.0), 0.0
    weights = section.get("weights", {})
    for name in weights:
        if name not in COVERAGE_FEATURES and name != BIAS:
            raise WeightsError(f"{path}: [{profile}] coverage names an unknown feature '{name}' "
                               f"(known: {', '.join(COVERAGE_FEATURES)})")
    return ((COVERAGE_FEATURES, tuple(float(weights.get(n, 0.0)) for n in COVERAGE_FEATURES),
             float(weights.get(BIAS, 0.0))), float(section.get("below", 0.0)))
