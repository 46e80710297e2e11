"""Hybrid retrieval: dense e5 vectors plus diacritic-free full-text search, fused per entry."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from . import features as F
from .batching import QueryBatcher
from .chunks import ANSWER, LISTING, NAME, QUESTION, SUMMARY
from .features import NAMES as FEATURES  # noqa: F401  (the features' names, in the order of Hit.features)
from .features import Evidence, Terms, coverage_features, load_coverage, load_listing_rule, load_weights
from .index import IndexData
from .knowledge import Listing
from .question import STOPWORDS, Question, analyse
from .text import bigrams, fold, syllables

DENSE_CANDIDATES = 32  # nearest chunks; 64 (and 50 hits) found nothing more on portal-dev: BENCHMARKS.md
LEXICAL_CANDIDATES = 24
LEXICAL_TERMS = 24
LEXICAL_WEIGHTS = (4.0, 2.0, 1.0)  # bm25 weights of title, keywords, body
# A candidate's score is its rank weights · features (bot/engine/features.py); the probability that the top
# candidate answers the question is a logistic function of the confidence weights · (features, 1). Two profiles,
# fitted by `python -m bench.fit --write` into bot/engine/weights.json: "curated" for the knowledge base alone,
# "national" when it includes the national database import, whose thousands of near-duplicate official procedures
# call for different weights.
DECLINE_BELOW = 0.5
SECTION_HITS = 3  # hits whose sections' scores are kept for the answer to choose from


@dataclass
class Hit:
    """One entry found for a question, with the evidence behind its rank."""

    entry_id: str
    score: float
    dense: float = 0.0
    lexical: float = 0.0
    chunk: int = -1  # best passage chunk, for quoting
    section: str = ""
    features: tuple[float, ...] = ()
    sections: dict[str, float] = field(default_factory=dict)  # best cosine of each section's chunks (top hits)
    passages: tuple[list[int], np.ndarray] | None = field(default=None, repr=False)  # chunk ids, their cosines


@dataclass
class ListingHit:
    """A procedure known by name only that the question may be about."""

    listing: Listing
    dense: float  # cosine of the question to its name
    words: float  # IDF-weighted share of the question's content words its name contains


@dataclass
class SearchResult:
    """Ranked entries and how sure we are that the first one answers the question."""

    question: Question
    hits: list[Hit] = field(default_factory=list)
    confidence: float = 0.0
    vector: np.ndarray | None = None  # the encoded question
    covered: float = 1.0  # probability that the base holds what the question is about
    covered_below: float = 0.0  # below this, the base is judged not to hold it
    listings: list[ListingHit] = field(default_factory=list)  # the closest procedures known by name only
    named: ListingHit | None = None  # the listing the question is about, when the listing rule says so
    coverage: dict[str, float] = field(default_factory=dict)  # the evidence behind `covered`, by name

    @property
    def expansions(self) -> tuple[str, ...]:
        """What the question's dictionary terms and acronyms stand for."""
        return self.question.expansions


def fts_query(terms: Sequence[str]) -> str:
    """An FTS5 query matching any of the terms (FTS5 matches all words by default, too strict for questions)."""
    unique = list(dict.fromkeys(t for t in terms if re.fullmatch(r"[0-9a-z._]+", t)))
    return " OR ".join(f'"{t}"' for t in unique)


def confidence(features: Sequence[float], weights: Sequence[float]) -> float:
    """Calibrated probability that the top entry answers the question."""
    z = sum(w * f for w, f in zip(weights, features)) + weights[-1]
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def stored_vectors(index) -> np.ndarray:
    """The index's vectors as an array: a view of an exact index's own memory, a copy from a graph index."""
    import faiss

    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    if isinstance(index, faiss.IndexFlat):
        return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
    return index.reconstruct_n(0, index.ntotal)


class Retriever:
    """Searches one opened index with one encoder."""

    def __init__(self, data: IndexData, encoder, profile: str | None = None, batcher: QueryBatcher | None = None):
        self.data = data
        self.encoder = encoder
        self.batcher = batcher  # questions answered side by side share encoder batches and FAISS calls
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fts")
        # Acronyms learned from procedure names, except those the curated dictionary already explains.
        explained = {fold(term) for term, _ in data.synonyms}
        self.acronyms = {k: v for k, v in data.acronyms.items() if k not in explained}
        self.imported = {e for e, record in data.entries.items() if record.imported}
        self.profile = profile or ("national" if self.imported else "curated")
        self.rank_weights, self.confidence_weights = load_weights(self.profile)
        self.coverage_weights, self.covered_below = load_coverage(self.profile)
        self.listing_rule = load_listing_rule(self.profile)
        # Each entry's terms (syllables and pairs) as sorted term ids: compact for tens of thousands of entries.
        self.vocab: dict[str, int] = {}
        self.lexicon: dict[str, np.ndarray] = {}
        self.name_lexicon: dict[str, np.ndarray] = {}
        self.title_terms: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # (syllables, telling pairs) of the title
        df: list[int] = []
        for entry_id, title, keywords, body in data.db.execute("select entry_id, title, keywords, body from lexical"):
            name = self._ids(f"{title} {keywords}".split(), grow=True)
            full = np.union1d(name, self._ids(body.split(), grow=True))
            self.name_lexicon[entry_id], self.lexicon[entry_id] = name, full
            words = title.split()
            self.title_terms[entry_id] = (
                self._ids([w for w in words if "_" not in w]),
                self._ids([w for w in words if "_" in w and not all(p in STOPWORDS for p in w.split("_"))]),
            )
            df.extend([0] * (len(self.vocab) - len(df)))
            for term in full:
                df[term] += 1
        n = max(len(self.lexicon), 1)
        counts = np.array(df, dtype=np.float64)
        self.idf = np.log(1 + (n - counts + 0.5) / (counts + 0.5))
        # Chunk vectors, to score every candidate exactly (not only those among the nearest chunks).
        self.vectors = stored_vectors(data.faiss_index)
        # One search thread: full-text search holds the other core meanwhile, and FAISS's OpenMP threads spin
        # waiting for a busy core (a 24k-chunk exact search took 40 ms with 2 threads on a loaded machine, 6.5 ms
        # with one).
        import faiss

        faiss.omp_set_num_threads(1)
        self.folded_titles = {e: " ".join(syllables(record.title)) for e, record in data.entries.items()}
        names = {NAME, QUESTION}
        self.entry_chunks: dict[str, tuple[list[int], list[int]]] = {}  # (name-like chunks, passages)
        # Procedures known by name only are embedded after every entry's chunks: dense search over entries stops
        # before them, and they are scored apart (`listings_for`).
        self.listing_chunks = [i for i, s in enumerate(data.chunk_section) if s == LISTING]
        self.entry_chunk_count = self.listing_chunks[0] if self.listing_chunks else len(data.chunk_section)
        if self.listing_chunks != list(range(self.entry_chunk_count, len(data.chunk_section))):
            raise ValueError("procedures known by name only must come after every entry's chunks")
        self.listing_words = [frozenset(syllables(data.listings[data.chunk_entry[i]].name)) for i in self.listing_chunks]
        for i, (entry, section) in enumerate(zip(data.chunk_entry[: self.entry_chunk_count],
                                                 data.chunk_section[: self.entry_chunk_count])):
            self.entry_chunks.setdefault(entry, ([], []))[0 if section in names else 1].append(i)

    def _ids(self, terms: Sequence[str], grow: bool = False) -> np.ndarray:
        """Sorted unique term ids (unknown terms get new ids only while building the vocabulary)."""
        ids = []
        for term in terms:
            i = self.vocab.get(term)
            if i is None and grow:
                i = self.vocab[term] = len(self.vocab)
            if i is not None:
                ids.append(i)
        return np.unique(np.array(ids, dtype=np.int32))

    def term_ids(self, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of a question's terms (-1 when unknown) and their IDF weights (unknown words count as rare)."""
        ids = np.array([self.vocab.get(t, -1) for t in terms], dtype=np.int64)
        weights = np.where(ids >= 0, self.idf[np.maximum(ids, 0)], self.idf.max(initial=1.0))
        return ids, weights


    def dense_vector(self, vector: np.ndarray, k: int = DENSE_CANDIDATES) -> list[tuple[int, float]]:
        """Nearest chunks to an encoded question."""
        return self.dense_vectors(vector[None, :], k)[0]

    def dense_vectors(self, vectors: np.ndarray, k: int = DENSE_CANDIDATES) -> list[list[tuple[int, float]]]:
        """Nearest chunks to each of several encoded questions (rows), in one FAISS call."""
        k = min(k, self.data.faiss_index.ntotal)  # type: ignore[attr-defined]
        if k == 0 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        query = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.listing_chunks:  # entries' chunks only: those of name-only procedures are scored apart
            import faiss

            index = self.data.faiss_index
            chosen = faiss.IDSelectorRange(0, self.entry_chunk_count)
            params = (faiss.SearchParametersHNSW(sel=chosen, efSearch=index.hnsw.efSearch)  # type: ignore[attr-defined]
                      if isinstance(index, faiss.IndexHNSW) else faiss.SearchParameters(sel=chosen))  # type: ignore[call-arg]
            k = min(k, self.entry_chunk_count)
            scores, ids = index.search(query, k, params=params)  # type: ignore[attr-defined]
        else:
            scores, ids = self.data.faiss_index.search(query, k)  # type: ignore[attr-defined]
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
                for row_ids, row_scores in zip(ids, scores)]

    def encode_and_search(self, dense_text: str) -> tuple[np.ndarray, list[tuple[int, float]]]:
        """The question's vector and its nearest chunks: through the batcher when answers run side by side."""
        if self.batcher is not None:
            vector, nearest = self.batcher.encode_search(dense_text, self)
            return vector, cast(list[tuple[int, float]], nearest)  # what `dense_vectors` gave for this question
        vector = self.encoder.encode([dense_text], role="query")[0]
        return vector, self.dense_vector(vector)

    def lexical(self, terms: Sequence[str], k: int = LEXICAL_CANDIDATES) -> list[tuple[str, float]]:
        """Entries by BM25 over folded syllables and bigrams, title and keywords weighted above the body.

        Only terms the index holds are searched, the rarest LEXICAL_TERMS of them: every extra common term costs
        a scan of a long posting list and adds almost nothing to BM25.
        """
        known = [t for t in dict.fromkeys(terms) if t in self.vocab]
        known.sort(key=lambda t: -self.idf[self.vocab[t]])
        query = fts_query(known[:LEXICAL_TERMS])
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

    def analyse(self, text: str) -> Question:
        """The question in every form retrieval and the answer read, against this index's dictionaries."""
        return analyse(text, self.data.synonyms, self.acronyms, self.data.restore)

    def candidates(self, question: str | Question, exclude: frozenset[str] = frozenset()) -> SearchResult:
        """Every entry found by either search, with its features, unranked."""
        q = question if isinstance(question, Question) else self.analyse(question)
        result = SearchResult(question=q)
        if q.empty:
            return result
        # Full-text search runs on the other core while the encoder (one thread) works: SQLite releases the GIL.
        lexical_search = self._pool.submit(self.lexical, q.terms)
        vector, nearest = self.encode_and_search(q.dense_text)
        result.vector = vector
        lexical = {e: sc for e, sc in lexical_search.result() if e not in exclude}
        entries = [e for e in dict.fromkeys([self.data.chunk_entry[c] for c, _ in nearest] + list(lexical))
                   if e not in exclude]
        top_lexical = max(lexical.values(), default=0.0) or 1.0
        empty = np.zeros(0, dtype=np.int32)
        own, own_weights = self.term_ids(q.content)
        terms = Terms(own=own, own_weights=own_weights, phrases=self.term_ids(q.phrases)[0],
                      asked=self._ids(list(q.syllables) + bigrams(list(q.syllables))))
        for entry in entries:
            name_chunks, passages = self.entry_chunks.get(entry, ([], []))
            name_scores = self.vectors[name_chunks] @ vector if name_chunks else np.zeros(0)
            passage_scores = self.vectors[passages] @ vector if passages else np.zeros(0)
            title_words, title_pairs = self.title_terms.get(entry, (empty, empty))
            evidence = Evidence(
                question=q, terms=terms, record=self.data.entries[entry],
                dense_name=float(name_scores.max(initial=0.0)), dense_passage=float(passage_scores.max(initial=0.0)),
                lexical=lexical.get(entry, 0.0) / top_lexical, lexicon=self.lexicon.get(entry, empty),
                name_lexicon=self.name_lexicon.get(entry, empty), title_words=title_words,
                title_word_idf=self.idf[title_words], title_pairs=title_pairs,
                folded_title=self.folded_titles.get(entry, ""),
            )
            features = F.compute(evidence)
            chunk = passages[int(passage_scores.argmax())] if passages else (name_chunks[0] if name_chunks else -1)
            result.hits.append(Hit(entry_id=entry, score=0.0, dense=features[0], lexical=lexical.get(entry, 0.0),
                                   chunk=chunk, section=self.data.chunk_section[chunk] if chunk >= 0 else "",
                                   features=features, passages=(passages, passage_scores)))
        return result

    def section_scores(self, hit: Hit) -> dict[str, float]:
        """The best cosine of each of a hit's sections (its summary and an FAQ's answer left out): what the
        answer reads to choose the section that answers the question."""
        out: dict[str, float] = {}
        if hit.passages is None:
            return out
        sections = self.data.chunk_section
        for chunk, score in zip(hit.passages[0], hit.passages[1].tolist()):
            section = sections[chunk]
            if section not in (SUMMARY, ANSWER) and score > out.get(section, -2.0):
                out[section] = score
        return out

    def search(self, question: str | Question, k: int = 5, exclude: frozenset[str] = frozenset()) -> SearchResult:
        """Rank entries for a question; an empty or meaningless question finds nothing."""
        result = self.candidates(question, exclude)
        for hit in result.hits:
            hit.score = sum(w * f for w, f in zip(self.rank_weights, hit.features))
        result.hits.sort(key=lambda h: -h.score)
        del result.hits[k:]
        for hit in result.hits[:SECTION_HITS]:
            hit.sections = self.section_scores(hit)
        if result.hits:
            top = result.hits[0]
            result.confidence = confidence(top.features, self.confidence_weights)
        if not result.question.empty:
            self.judge_coverage(result)
        return result

    def word_weights(self, words: Sequence[str]) -> dict[str, float]:
        """IDF of each word in the index (a word the base never uses counts as the rarest)."""
        ids, weights = self.term_ids(words)
        return dict(zip(words, weights.tolist()))

    def listings_for(self, result: SearchResult, k: int = 3) -> list[ListingHit]:
        """The procedures known by name only closest to the question, by the cosine of their names."""
        if not self.listing_chunks or result.vector is None:
            return []
        scores = self.vectors[self.entry_chunk_count:] @ result.vector
        best = np.argsort(-scores)[:k]
        weights = self.word_weights(list(dict.fromkeys(result.question.content)))
        total = sum(weights.values()) or 1.0
        out = []
        for j in best:
            chunk = self.listing_chunks[int(j)]
            words = sum(w for s, w in weights.items() if s in self.listing_words[int(j)]) / total
            out.append(ListingHit(self.data.listings[self.data.chunk_entry[chunk]], float(scores[j]), words))
        return out

    def judge_coverage(self, result: SearchResult) -> None:
        """How likely the base holds what the question is about (not only something like it): `result.covered`."""
        q = result.question
        weights = self.word_weights(list(dict.fromkeys(q.content)))
        total = sum(weights.values())
        unknown = sum(w for s, w in weights.items() if s not in self.vocab) / total if total else 0.0
        held: set[int] = set()
        for hit in result.hits[:3]:
            held.update(self.lexicon.get(hit.entry_id, np.zeros(0, dtype=np.int32)).tolist())
        unmatched = (sum(w for s, w in weights.items() if self.vocab.get(s, -1) not in held) / total) if total else 0.0
        result.listings = self.listings_for(result)
        top = result.hits[0].features if result.hits else (0.0,) * len(FEATURES)
        result.coverage = coverage_features(top, result.listings[0] if result.listings else None, unknown, unmatched)
        names, coverage_weights, bias = self.coverage_weights
        result.covered = confidence([result.coverage[n] for n in names], [*coverage_weights, bias])
        result.covered_below = self.covered_below
        if result.listings and self.listing_rule.names(result.coverage):
            result.named = result.listings[0]
