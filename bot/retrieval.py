"""Hybrid retrieval: dense e5 vectors plus diacritic-free full-text search, fused per entry."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .index import IndexData
from .text import clean, normalize, syllables

# Folded syllables that carry no topic: question words, pronouns, politeness.
STOPWORDS = frozenset(
    """a ah ak alo anh ban bi biet bo cac cach cai can cau chi cho chu co con cua cung da dang de den deu di
    dieu do duoc em gi giup hay hai hoi hoac hoi khi khong la lam lieu luc ma minh mot muon nao ne neu nha nhe
    nhieu nhu nhung noi o oi phai qua ra roi sao se tai the thi thu tuc toi tren tu va vay ve vi voi xin
    u uh vang dc ko k j z ntn""".split()
)
DENSE_CANDIDATES = 64
LEXICAL_CANDIDATES = 50
RRF_K = 20
LEXICAL_WEIGHTS = (4.0, 2.0, 1.0)  # bm25 weights of title, keywords, body
# Logistic calibration of "the top entry answers the question", fitted on tests/data/calibration.tsv.
CONFIDENCE_WEIGHTS = (18.0, 3.5, -17.5)  # dense cosine, term coverage, bias
DECLINE_BELOW = 0.5


@dataclass
class Hit:
    """One entry found for a question, with the evidence behind its rank."""

    entry_id: str
    score: float
    dense: float = 0.0
    lexical: float = 0.0
    chunk: int = -1  # best passage chunk, for quoting
    section: str = ""


@dataclass
class SearchResult:
    """Ranked entries and how sure we are that the first one answers the question."""

    question: str
    hits: list[Hit] = field(default_factory=list)
    confidence: float = 0.0
    coverage: float = 0.0
    expansions: list[str] = field(default_factory=list)


def content_syllables(text: str) -> list[str]:
    """Folded syllables of a question without question words and politeness."""
    return [s for s in syllables(text) if s not in STOPWORDS and len(s) > 0]


def expand_synonyms(question: str, synonyms: Sequence[tuple[str, list[str]]]) -> list[str]:
    """Expansions of the dictionary terms the question contains (matched on folded whole words)."""
    folded = " " + " ".join(syllables(question)) + " "
    out: list[str] = []
    for term, expansions in synonyms:
        key = " ".join(syllables(term))
        if key and f" {key} " in folded:
            out.extend(e for e in expansions if e not in out)
    return out


def fts_query(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of the terms (FTS5 matches all words by default, too strict for questions)."""
    unique = list(dict.fromkeys(t for t in terms if re.fullmatch(r"[0-9a-z.]+", t)))
    return " OR ".join(f'"{t}"' for t in unique)


def rrf(rankings: Sequence[Sequence[str]], weights: Sequence[float], k: int = RRF_K) -> dict[str, float]:
    """Weighted reciprocal-rank fusion of several rankings of ids."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank + 1)
    return scores


def confidence(dense: float, coverage: float, weights: Sequence[float] = CONFIDENCE_WEIGHTS) -> float:
    """Calibrated probability that the top entry answers the question."""
    a, b, c = weights
    return 1.0 / (1.0 + math.exp(-(a * dense + b * coverage + c)))


class Retriever:
    """Searches one opened index with one encoder."""

    def __init__(self, data: IndexData, encoder, dense_weight: float = 1.0, lexical_weight: float = 1.0):
        self.data = data
        self.encoder = encoder
        self.weights = (dense_weight, lexical_weight)
        self._lexicon: dict[str, frozenset[str]] = {}

    def dense(self, text: str, k: int = DENSE_CANDIDATES) -> list[tuple[int, float]]:
        """Nearest chunks by cosine similarity."""
        vector = self.encoder.encode([text], role="query")
        k = min(k, self.data.faiss_index.ntotal)  # type: ignore[attr-defined]
        if k == 0:
            return []
        scores, ids = self.data.faiss_index.search(np.ascontiguousarray(vector, dtype=np.float32), k)  # type: ignore[attr-defined]
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def lexical(self, terms: Sequence[str], k: int = LEXICAL_CANDIDATES) -> list[tuple[str, float]]:
        """Entries by BM25 over folded syllables, title and keywords weighted above the body."""
        query = fts_query(terms)
        if not query:
            return []
        w = ", ".join(str(x) for x in LEXICAL_WEIGHTS)
        rows = self.data.db.execute(
            f"select lexical.entry_id, -bm25(lexical_fts, {w}) as score from lexical_fts "
            "join lexical on lexical.rowid = lexical_fts.rowid where lexical_fts match ? "
            "order by score desc limit ?",
            (query, k),
        ).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    def lexicon(self, entry_id: str) -> frozenset[str]:
        """Every folded syllable of an entry, for measuring how much of a question it covers."""
        if entry_id not in self._lexicon:
            row = self.data.db.execute(
                "select title, keywords, body from lexical where entry_id = ?", (entry_id,)
            ).fetchone()
            self._lexicon[entry_id] = frozenset(" ".join(row).split()) if row else frozenset()
        return self._lexicon[entry_id]

    def search(self, question: str, k: int = 5) -> SearchResult:
        """Rank entries for a question; an empty or meaningless question finds nothing."""
        question = clean(question)
        result = SearchResult(question=question)
        if not syllables(question):
            return result
        result.expansions = expand_synonyms(question, self.data.synonyms)
        dense_text = normalize(question)
        if result.expansions:
            dense_text += " (" + "; ".join(result.expansions) + ")"
        terms = content_syllables(question + " " + " ".join(result.expansions))

        best: dict[str, tuple[float, int]] = {}
        best_passage: dict[str, tuple[float, int]] = {}
        for chunk, score in self.dense(dense_text):
            entry = self.data.chunk_entry[chunk]
            if entry not in best or score > best[entry][0]:
                best[entry] = (score, chunk)
            if self.data.chunk_section[chunk] not in ("Tên", "Câu hỏi"):
                if entry not in best_passage or score > best_passage[entry][0]:
                    best_passage[entry] = (score, chunk)
        dense_rank = sorted(best, key=lambda e: -best[e][0])
        lexical = self.lexical(terms)
        lexical_scores = dict(lexical)
        fused = rrf([dense_rank, [e for e, _ in lexical]], self.weights)
        ranked = sorted(fused, key=lambda e: -fused[e])[:k]
        for entry in ranked:
            dense_score = best.get(entry, (0.0, -1))[0]
            chunk = best_passage.get(entry, best.get(entry, (0.0, -1)))[1]
            result.hits.append(Hit(
                entry_id=entry,
                score=fused[entry],
                dense=dense_score,
                lexical=lexical_scores.get(entry, 0.0),
                chunk=chunk,
                section=self.data.chunk_section[chunk] if chunk >= 0 else "",
            ))
        if result.hits:
            top = result.hits[0]
            own = content_syllables(question)
            lexicon = self.lexicon(top.entry_id)
            result.coverage = sum(1 for s in own if s in lexicon) / len(own) if own else 0.0
            result.confidence = confidence(top.dense, result.coverage)
        return result

    def chunks_of(self, entry_id: str) -> list[int]:
        """Chunk ids of an entry (for picking the best section to quote)."""
        return [i for i, e in enumerate(self.data.chunk_entry) if e == entry_id]

