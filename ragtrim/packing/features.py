"""What the packer knows about each unit: relevance features (pure functions over a UnitSet).

``base_features`` are the unit's own signals: dense similarity to the query, lexical coverage
of the query's content terms (alone and with the title and section headings above it), its
chunk's retrieval score and rank, its neighbours' signals, its position and shape, and cues
that pair the question's form with the unit's content (a "how many" question and a unit with a
number). ``EvidenceState`` adds the *conditional* features, recomputed after every choice: how
much of the question the unit covers that the chosen evidence does not yet cover, and how much
it is about what the chosen evidence introduced and the question lacks (the bridge of a
multi-hop question: the first-hop sentence names the entity the second hop is about).
"""

from __future__ import annotations

import functools
import re
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragtrim.cache import normalise_query, query_anchors
from ragtrim.packing.units import UnitSet, heading_text
from ragtrim.query import QueryContext
from ragtrim.scoring import (
    cosine_to_query,
    default_tokenizer,
    lexical_coverages,
    minmax,
    query_terms,
    sentence_terms,
    with_headings,
)
from ragtrim.types import Candidate

BASE_FEATURES = (
    "dense",
    "dense_gap",
    "lexical",
    "lexical_gap",
    "heading_lexical",
    "chunk_score",
    "chunk_rank",
    "chunk_best_dense",
    "neighbour_dense",
    "neighbour_lexical",
    "position",
    "first",
    "length",
    "chunk_share",
    "digit",
    "quantity_digit",
    "when_year",
    "who_capital",
    "query_best_dense",
    "query_comparison",
    "query_yes_no",
    "dense_rank",
    "lexical_rank",
    "dense_x_lexical",
    "chunk_best_lexical",
    "anchor_text",
    "anchor_heading",
    "hand_value",
    "hand_relative",
)
CONDITIONAL_FEATURES = (
    "has_evidence",
    "marginal_lexical",
    "bridge",
    "title_bridge",
    "same_document",
    "adjacent",
    "redundancy",
)
FEATURES = BASE_FEATURES + CONDITIONAL_FEATURES
#: the hand-set mix's default dense / lexical / chunk weights (``ContextPacker``'s defaults)
HAND_WEIGHTS = (0.35, 0.35, 0.3)

_QUANTITY = re.compile(
    r"\b(how (many|much|long|old|far|big|large|often|tall|high)|what (percentage|number|"
    r"amount|year|date|time|age)|number of|percentage)\b",
    re.IGNORECASE,
)
_WHEN = re.compile(r"\b(when|what year|which year|what date|since when)\b", re.IGNORECASE)
_WHO = re.compile(r"\b(who|whom|whose|which (person|company|team|band|author|player))\b", re.I)
_COMPARISON = re.compile(
    r"\b(both|either|neither|same|compare|compared|versus|vs\.?|differ|difference|than|"
    r"older|younger|earlier|later|first|larger|smaller|more|fewer|less)\b",
    re.IGNORECASE,
)
_YES_NO = re.compile(
    r"^\s*(is|are|was|were|do|does|did|can|could|has|have|had|will|should)\b", re.I
)
_DIGIT = re.compile(r"\d")
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
_CAPITAL = re.compile(r"(?<=[a-z0-9,;:] )[A-Z][a-z]+")


@dataclass
class Features:
    """``matrix[i]`` is unit ``i``'s base features in ``BASE_FEATURES`` order; ``dense``,
    ``lexical`` and ``chunk_prior`` are the columns the hand-set mix reads."""

    matrix: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    chunk_prior: np.ndarray


def base_features(
    ctx: QueryContext,
    unitset: UnitSet,
    candidates: list[Candidate],
    granularity: str,
    heading_weight: float,
    with_dense: bool = True,
    with_lexical: bool = True,
) -> Features:
    units = unitset.units
    n = len(units)
    if n == 0:
        empty = np.zeros(0)
        return Features(np.zeros((0, len(BASE_FEATURES))), empty, empty, empty)
    owner = np.array([u.candidate for u in units], dtype=np.int64)
    chunk_prior = minmax(np.array([c.score for c in candidates]))[owner]
    dense = np.zeros(n)
    if with_dense and granularity == "sentence" and unitset.vectors is not None:
        dense = cosine_to_query(ctx.query_vector(), unitset.vectors)
    elif with_dense and granularity == "chunk":
        dense = cosine_to_query(
            ctx.query_vector(), ctx.chunk_vectors([c.chunk for c in candidates])
        )[owner]
    texts = [u.text for u in units]
    stored = None if unitset.vocabulary is None else (unitset.vocabulary, unitset.term_ids)
    lexical = heading_lexical = mixed_lexical = np.zeros(n)
    if with_lexical:
        lexical, heading_lexical = lexical_coverages(
            ctx.query, texts, stored=stored, headings=_headings(unitset, candidates)
        )
        mixed_lexical = with_headings(lexical, heading_lexical, heading_weight)

    # the previous packer's value (its default weights) and its value relative to the best:
    # what its relative cutoff decided on, so the fit starts from what it knew
    hand = (
        HAND_WEIGHTS[0] * dense
        + HAND_WEIGHTS[1] * with_headings(lexical, heading_lexical, 0.5)
        + HAND_WEIGHTS[2] * chunk_prior
    )
    chunk_best = np.zeros(len(candidates))
    np.maximum.at(chunk_best, owner, dense)
    chunk_best_lexical = np.zeros(len(candidates))
    np.maximum.at(chunk_best_lexical, owner, heading_lexical)
    previous, following = _neighbours(unitset)
    neighbour_dense = np.maximum(_take(dense, previous), _take(dense, following))
    neighbour_lexical = np.maximum(_take(lexical, previous), _take(lexical, following))
    position = np.array([u.position / max(u.siblings - 1, 1) for u in units])
    first = np.array([u.position == 0 for u in units], dtype=np.float64)
    cost = np.array([u.cost for u in units], dtype=np.float64)
    length = np.log1p(cost) / np.log(256.0)
    chunk_tokens = np.array([max(c.chunk.token_count, 1) for c in candidates], dtype=np.float64)
    chunk_share = np.minimum(cost / chunk_tokens[owner], 1.0)
    digit, year, capital = np.array([_text_cues(t) for t in texts], dtype=np.float64).T
    query = ctx.query
    asks_quantity = float(bool(_QUANTITY.search(query)))
    asks_when = float(bool(_WHEN.search(query)))
    asks_who = float(bool(_WHO.search(query)))
    matrix = np.column_stack(
        [
            dense,
            dense - dense.max(),
            lexical,
            lexical - lexical.max(),
            heading_lexical,
            chunk_prior,
            1.0 / (1.0 + owner),
            chunk_best[owner],
            neighbour_dense,
            neighbour_lexical,
            position,
            first,
            length,
            chunk_share,
            digit,
            asks_quantity * digit,
            asks_when * year,
            asks_who * capital,
            np.full(n, dense.max()),
            np.full(n, float(bool(_COMPARISON.search(query)))),
            np.full(n, float(bool(_YES_NO.search(query)))),
            1.0 / (1.0 + _ranks(dense)),
            1.0 / (1.0 + _ranks(lexical + heading_lexical)),
            dense * heading_lexical,
            chunk_best_lexical[owner],
            *_anchor_shares(query, texts, unitset, candidates),
            hand,
            hand / hand.max() if hand.max() > 0 else hand,
        ]
    )
    return Features(matrix, dense, mixed_lexical, chunk_prior)


class EvidenceState:
    """Conditional features of every unit given the evidence chosen so far.

    Terms are the index's stored term ids where it has them (tokenised otherwise), mapped into
    one id space per pack; IDF is over this pack's units, as in the lexical coverage.
    """

    def __init__(self, ctx: QueryContext, unitset: UnitSet, candidates: list[Candidate]):
        units = unitset.units
        self.n = n = len(units)
        vocabulary = unitset.vocabulary
        local: dict[str, int] = {}

        def ids_of(terms) -> np.ndarray:
            out = []
            for term in terms:
                known = vocabulary.term_id(term) if vocabulary is not None else None
                out.append(known if known is not None else -1 - local.setdefault(term, len(local)))
            return np.array(out, dtype=np.int64)

        rows = [
            ids if ids is not None else ids_of(sentence_terms(unit.text))
            for unit, ids in zip(units, unitset.term_ids, strict=True)
        ]
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        entry_unit = np.repeat(np.arange(n), lengths)
        flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        query = ids_of(query_terms(ctx.query, default_tokenizer()))
        headings = []
        for candidate in candidates:
            text = heading_text(candidate.chunk)
            if vocabulary is None:
                headings.append(ids_of(_heading_terms(text)))
                continue
            ids, unknown = _heading_ids(vocabulary, text)
            if unknown:
                ids = ids.copy()
                for at, term in unknown:
                    ids[at] = -1 - local.setdefault(term, len(local))
            headings.append(ids)
        vocab, inverse = np.unique(
            np.concatenate([flat, query, *headings]) if n else query, return_inverse=True
        )
        width = max(len(vocab), 1)
        # a unit's stored or tokenised terms are distinct, and rows are concatenated in unit
        # order: unit i's terms are entry_column[offsets[i]:offsets[i + 1]]
        self.entry_unit, self.entry_column = entry_unit, inverse[: len(flat)]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        df = np.bincount(self.entry_column, minlength=width)
        self.idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
        self.is_query = np.zeros(width, dtype=bool)
        self.is_query[np.searchsorted(vocab, query)] = True
        self.query_mass = float(self.idf[self.is_query].sum()) or 1.0
        self.entry_idf = self.idf[self.entry_column]
        # each candidate's title and section terms the question lacks, with their IDF
        heading_pairs = np.unique(
            np.concatenate(
                [ci * width + np.searchsorted(vocab, h) for ci, h in enumerate(headings)]
                or [np.zeros(0, dtype=np.int64)]
            )
        )
        heading_candidate, heading_column = heading_pairs // width, heading_pairs % width
        outside = ~self.is_query[heading_column]
        self.heading_candidate = heading_candidate[outside]
        self.heading_column = heading_column[outside]
        self.heading_idf = self.idf[self.heading_column]
        self.heading_mass = np.bincount(
            self.heading_candidate, weights=self.heading_idf, minlength=len(candidates)
        )
        self.owner = np.array([u.candidate for u in units], dtype=np.int64)
        documents: dict[str, int] = {}
        self.doc_of = np.array(
            [documents.setdefault(u.doc_id, len(documents)) for u in units], dtype=np.int64
        )
        self.doc_chosen = np.zeros(int(self.doc_of.max()) + 1 if n else 0, dtype=bool)
        self.previous, self.following = _neighbours(unitset)
        self.adjacent = np.zeros(n, dtype=bool)
        self.vectors = unitset.vectors
        self.covered = np.zeros(width, dtype=bool)
        self.features = np.zeros((n, len(CONDITIONAL_FEATURES)))
        self.features[:, 1] = self._weighted(self.is_query) / self.query_mass
        self._redundancy = np.zeros(n)
        # WHY: re-scoring after every choice dominated packing time. The question's own terms
        # are a few columns, so the marginal coverage sums only their entries (the same sums,
        # less the zeros).
        on_query = np.flatnonzero(self.is_query[self.entry_column])
        self._query_unit = self.entry_unit[on_query]
        self._query_column = self.entry_column[on_query]
        self._query_idf = self.entry_idf[on_query]

    def _weighted(self, wanted: np.ndarray) -> np.ndarray:
        weights = self.entry_idf * wanted[self.entry_column]
        return np.bincount(self.entry_unit, weights=weights, minlength=self.n)

    def add(self, unit: int) -> None:
        """Choose ``unit`` and update every unit's conditional features (the coverage shares
        change only when the choice covers a term that was not covered yet)."""
        columns = self.entry_column[self.offsets[unit] : self.offsets[unit + 1]]
        new = columns[~self.covered[columns]]
        self.covered[new] = True
        f = self.features
        f[:, 0] = 1.0
        new_on_query = self.is_query[new]
        if new_on_query.any():
            remaining = ~self.covered & self.is_query
            remaining_mass = float(self.idf[remaining].sum())
            if remaining_mass:
                marginal = np.bincount(
                    self._query_unit,
                    weights=self._query_idf * remaining[self._query_column],
                    minlength=self.n,
                )
                f[:, 1] = marginal / remaining_mass
            else:
                f[:, 1] = 0.0
        if not new_on_query.all():
            bridge = self.covered & ~self.is_query
            f[:, 2] = np.minimum(self._weighted(bridge) / self.query_mass, 1.0)
            title_bridge = np.bincount(
                self.heading_candidate,
                weights=self.heading_idf * bridge[self.heading_column],
                minlength=len(self.heading_mass),
            ) / np.maximum(self.heading_mass, 1e-12)
            f[:, 3] = title_bridge[self.owner]
        self.doc_chosen[self.doc_of[unit]] = True
        for neighbour in (self.previous[unit], self.following[unit]):
            if neighbour >= 0:
                self.adjacent[neighbour] = True
        if self.vectors is not None:
            # the running maximum starts at 0, so clipping it once at 1 equals clipping every
            # similarity to [0, 1] first
            np.maximum(self._redundancy, self.vectors @ self.vectors[unit], out=self._redundancy)
        f[:, 4] = self.doc_chosen[self.doc_of]
        f[:, 5] = self.adjacent
        f[:, 6] = np.minimum(self._redundancy, 1.0)


@functools.lru_cache(maxsize=65_536)
def _heading_terms(text: str) -> tuple[str, ...]:
    """A title and section path's terms (cached: every candidate of a document repeats it)."""
    return tuple(sentence_terms(text))


#: per index vocabulary, a heading's term ids and the (position, term) of those it lacks
_HEADING_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_HEADING_IDS_PER_VOCABULARY = 65_536


def _heading_ids(vocabulary: Any, text: str) -> tuple[np.ndarray, tuple[tuple[int, str], ...]]:
    """WHY cached: the same candidates' headings recur query after query, and looking their
    terms up one by one was a quarter of the conditional scoring's set-up (timed per line)."""
    known = _HEADING_IDS.setdefault(vocabulary, {})
    if text not in known:
        if len(known) >= _HEADING_IDS_PER_VOCABULARY:
            known.clear()
        terms = _heading_terms(text)
        ids = [vocabulary.term_id(term) for term in terms]
        unknown = tuple(
            (at, term) for at, (term, i) in enumerate(zip(terms, ids, strict=True)) if i is None
        )
        known[text] = (np.array([-1 if i is None else i for i in ids], dtype=np.int64), unknown)
    return known[text]


@functools.lru_cache(maxsize=200_000)
def _text_cues(text: str) -> tuple[bool, bool, bool]:
    """Has a digit, a year, a capitalised word inside the sentence (cached: chunks recur)."""
    return bool(_DIGIT.search(text)), bool(_YEAR.search(text)), bool(_CAPITAL.search(text))


def _anchor_shares(
    query: str, texts: list[str], unitset: UnitSet, candidates: list[Candidate]
) -> tuple[np.ndarray, np.ndarray]:
    """Share of the query's anchors (tokens with digits, quoted terms: "Relay 3.3",
    "PM-2025-014") that occur verbatim in each unit, and in its title and section path: a
    unit about version 3.0 is not about 3.3, however similar the words."""
    anchors = [a for a in query_anchors(query).split("\x1f") if a]
    n = len(texts)
    if not anchors:
        return np.zeros(n), np.zeros(n)
    in_text = np.array([_share(anchors, _folded(t)) for t in texts])
    headings = [_share(anchors, _folded(heading_text(c.chunk))) for c in candidates]
    owner = [u.candidate for u in unitset.units]
    return in_text, np.array([headings[ci] for ci in owner])


def _share(anchors: list[str], text: str) -> float:
    return sum(a in text for a in anchors) / len(anchors)


@functools.lru_cache(maxsize=200_000)
def _folded(text: str) -> str:
    return normalise_query(text)


def _ranks(values: np.ndarray) -> np.ndarray:
    """0 for the highest value, 1 for the next, ... (ties by position)."""
    ranks = np.empty(len(values))
    ranks[np.argsort(-values, kind="stable")] = np.arange(len(values))
    return ranks


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.where(index >= 0, values[np.maximum(index, 0)], 0.0)


def _neighbours(unitset: UnitSet) -> tuple[np.ndarray, np.ndarray]:
    """The unit before and after each unit in its own chunk (-1 where there is none); kept on
    the unit set, as the base and the conditional features both read it."""
    if unitset.neighbours is not None:
        return unitset.neighbours
    units = unitset.units
    n = len(units)
    previous = np.full(n, -1, dtype=np.int64)
    following = np.full(n, -1, dtype=np.int64)
    for i in range(1, n):
        a, b = units[i - 1], units[i]
        if a.candidate == b.candidate and b.position == a.position + 1:
            previous[i], following[i - 1] = i - 1, i
    unitset.neighbours = (previous, following)
    return previous, following


def _headings(unitset: UnitSet, candidates: list[Candidate]) -> tuple[list[str], list[int]]:
    """Each unit's title and section path, as ``lexical_coverages`` takes them."""
    texts: dict[str, int] = {}
    of_candidate = []
    for candidate in candidates:
        of_candidate.append(texts.setdefault(heading_text(candidate.chunk), len(texts)))
    return list(texts), [of_candidate[u.candidate] for u in unitset.units]
