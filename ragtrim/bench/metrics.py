"""Benchmark metrics as pure functions: answer quality, evidence coverage, ranking, statistics.

Every metric that can be undefined for a query (no span answer, no gold sentence, no gold
document) returns ``None`` instead of a number, and :func:`aggregate` averages only the defined
values. Counting an unanswerable question as "answer found: 0" would silently drag a mean down,
and counting it as 1 would inflate it; ``None`` keeps both out and ``n`` says how many counted.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ragtrim.errors import InputError

# --- answers -------------------------------------------------------------------------------

_PUNCTUATION_DELETE = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)

LABEL_ANSWERS = frozenset(
    {
        "yes",
        "no",
        "maybe",
        "support",
        "supports",
        "contradict",
        "refutes",
        "not enough info",
        "nei",
        "true",
        "false",
    }
)
"""Class labels (PubMedQA, SciFact, FEVER, BoolQ) in :func:`word_form` form.

``not_enough_info`` is covered because :func:`word_form` turns ``_`` into a space."""

_NON_ALPHANUMERIC = re.compile(r"[\W_]+", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD's official normalisation: lowercase, drop punctuation, drop a/an/the, squash spaces.

    Same steps in the same order as ``evaluate-v2.0.py``; ``str.translate`` replaces the
    per-character generator only because contexts are long (the output is identical).
    """
    text = text.lower().translate(_PUNCTUATION_DELETE)
    return " ".join(_ARTICLES.sub(" ", text).split())


def word_form(text: str) -> str:
    """Lowercase, every run of non-alphanumerics (``_`` and Unicode punctuation included) to
    one space, trimmed: just the words.

    Recognises labels (``"NOT_ENOUGH_INFO"``, ``"Yes."`` -> ``"not enough info"``, ``"yes"``)
    and is the form :func:`answer_recall` matches in.
    """
    return " ".join(_NON_ALPHANUMERIC.sub(" ", text.lower()).split())


def span_answers(answers: Sequence[str]) -> tuple[str, ...]:
    """The answers that can be looked for inside a context.

    Rule: if every answer is a label (its :func:`word_form` is in :data:`LABEL_ANSWERS`), none
    is a span and the result is empty (a "yes" is not evidence of anything when found in a
    text). Otherwise every answer is a span unless it has no words left after normalisation
    (SQuAD's, e.g. "the", or :func:`word_form`'s, e.g. "€"): such an answer would match any
    context. No answers -> empty.
    """
    if answers and all(word_form(a) in LABEL_ANSWERS for a in answers):
        return ()
    return tuple(a for a in answers if normalize_answer(a) and word_form(a))


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def _scorable_golds(golds: Sequence[str]) -> list[str]:
    """SQuAD v2: golds that normalise to "" are dropped; no gold left means "no answer" ("")."""
    kept = [g for g in golds if normalize_answer(g)]
    return kept or [""]


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD v2 exact match, max over golds; with no gold, 1.0 only for an empty prediction."""
    normalized = normalize_answer(prediction)
    return float(max(normalized == normalize_answer(g) for g in _scorable_golds(golds)))


def _token_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    if not prediction_tokens or not gold_tokens:
        return float(prediction_tokens == gold_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(prediction_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD v2 token F1 (bag of normalised tokens), max over golds."""
    prediction_tokens = _tokens(prediction)
    return max(_token_f1(prediction_tokens, _tokens(g)) for g in _scorable_golds(golds))


def answer_recall(context: str, answers: Sequence[str]) -> float | None:
    """1.0 if any span answer occurs in the context, else 0.0; ``None`` without span answers.

    Both sides are lowercased, every run of punctuation/symbols (Unicode-aware) becomes one
    space and whitespace is squashed (:func:`word_form`). A one-word answer must then match a
    whole word; a longer answer may start or end inside a word.

    Why not a plain substring test on SQuAD-normalised text: deleting punctuation glues
    "1115–1234" and "Denmark-Norway" together, a plain test then finds "10" inside "1990"
    (about 10% more hits of SQuAD-2 answers in the wrong paragraph), and dropping articles
    breaks answers that annotators cut mid-word ("he severe acute ..." no longer matches
    "the severe acute ..."). Answers cut mid-word are common in COVID-QA, hence partial
    edges for multi-word answers. With the gold documents as context this rule finds
    2908/2908 SQuAD-2 and 1379/1380 COVID-QA answers (the miss is the answer "sed").
    """
    spans = span_answers(answers)
    if not spans:
        return None
    haystack = f" {word_form(context)} "
    for answer in spans:
        needle = word_form(answer)
        whole_word_only = " " not in needle
        if (f" {needle} " if whole_word_only else needle) in haystack:
            return 1.0
    return 0.0


def _squash_whitespace(text: str) -> str:
    return " ".join(text.split())


def evidence_recall(context: str, gold_sentences: Sequence[str]) -> tuple[float, bool] | None:
    """Share of gold sentences present verbatim (up to whitespace) in the context, and "all?".

    A sentence must appear as one contiguous string: one cut in two by an elision marker is
    not present. ``None`` when there is no (non-blank) gold sentence.
    """
    sentences = [s for s in (_squash_whitespace(g) for g in gold_sentences) if s]
    if not sentences:
        return None
    haystack = _squash_whitespace(context)
    found = sum(s in haystack for s in sentences)
    return found / len(sentences), found == len(sentences)


def doc_recall(retrieved_doc_ids: Iterable[str], gold_doc_ids: Iterable[str]) -> float | None:
    """Share of distinct gold documents among the retrieved ones; ``None`` with no gold."""
    gold = set(gold_doc_ids)
    if not gold:
        return None
    return len(gold.intersection(retrieved_doc_ids)) / len(gold)


# --- ranking (BEIR / pytrec_eval conventions) -----------------------------------------------


def _unique_top_k(ranked_ids: Sequence[str], k: int | None) -> list[str]:
    """First occurrence of each id, cut at k: a run scored by pytrec_eval is a dict, so a
    document can be credited only once."""
    if k is not None and k <= 0:
        raise InputError(f"k must be a positive integer, got {k}")
    unique = list(dict.fromkeys(ranked_ids))
    return unique if k is None else unique[:k]


def _discount(n: int) -> np.ndarray:
    # rank r (1-based) is discounted by log2(r + 1)
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def ndcg_at_k(ranked_ids: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k as ``pytrec_eval``'s ``ndcg_cut_k`` (what BEIR reports).

    Gain is the linear relevance (``rel / log2(rank + 1)``); grades <= 0 gain nothing. The ideal
    ranking is every judged document sorted by grade, cut at k. 0.0 when nothing is relevant.
    """
    top = _unique_top_k(ranked_ids, k)
    gains = np.array([max(relevance.get(doc_id, 0), 0) for doc_id in top], dtype=np.float64)
    ideal = np.sort(np.array([g for g in relevance.values() if g > 0], dtype=np.float64))[::-1]
    ideal = ideal[:k]
    if ideal.size == 0:
        return 0.0
    ideal_dcg = float(ideal @ _discount(ideal.size))
    dcg = float(gains @ _discount(gains.size)) if gains.size else 0.0
    return dcg / ideal_dcg


def recall_at_k(ranked_ids: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """Share of relevant documents (grade > 0) in the top k; 0.0 when nothing is relevant."""
    relevant = {doc_id for doc_id, grade in relevance.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_unique_top_k(ranked_ids, k))) / len(relevant)


def mrr(ranked_ids: Sequence[str], relevance: Mapping[str, int], k: int | None = None) -> float:
    """Reciprocal rank of the first relevant document (grade > 0) within the top k, else 0."""
    for rank, doc_id in enumerate(_unique_top_k(ranked_ids, k), start=1):
        if relevance.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


# --- statistics ----------------------------------------------------------------------------

_BOOTSTRAP_BLOCK_CELLS = 2_000_000  # resample indices drawn per block: bounds memory (~16 MB)


def _defined_values(values: Iterable[Any], what: str = "values") -> np.ndarray:
    kept = [v for v in values if v is not None]
    for v in kept:
        if isinstance(v, (str, bytes)) or not isinstance(v, (int, float, np.number, np.bool_)):
            raise InputError(f"{what}: expected numbers or None, got {v!r}")
    array = np.asarray(kept, dtype=np.float64)
    if array.size and not np.all(np.isfinite(array)):
        raise InputError(f"{what}: NaN or infinite value among {array.size} values")
    return array


def bootstrap_ci(
    values: Iterable[float | bool | None],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high): the sample mean and a percentile-bootstrap interval of the mean.

    ``None`` values are ignored. The same values and seed always give the same interval.
    """
    array = _defined_values(values)
    if array.size == 0:
        raise InputError("bootstrap_ci: no values (all None or empty)")
    if n_resamples < 1:
        raise InputError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(array.mean())
    n = array.size
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_BLOCK_CELLS // n)
    means = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = array[indices].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return mean, float(low), float(high)


def percentiles(values: Iterable[float | None], qs: Sequence[float] = (50, 95)) -> dict[str, float]:
    """``{"p50": ..., "p95": ...}`` (linear interpolation, numpy's default); ignores None."""
    array = _defined_values(values)
    if array.size == 0:
        raise InputError("percentiles: no values (all None or empty)")
    results = np.percentile(array, list(qs))
    return {f"p{q:g}": float(r) for q, r in zip(qs, results, strict=True)}


def aggregate(
    records: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per metric key: ``{"mean", "ci": (low, high), "n"}`` over the records where it is defined.

    A record without the key, or with ``None``, does not count; ``n == 0`` gives mean and ci
    ``None``. Booleans count as 0/1.
    """
    summary: dict[str, dict[str, Any]] = {}
    for key in keys:
        array = _defined_values((r.get(key) for r in records), what=f"metric {key!r}")
        if array.size == 0:
            summary[key] = {"mean": None, "ci": None, "n": 0}
            continue
        mean, low, high = bootstrap_ci(array, n_resamples, confidence, seed)
        summary[key] = {"mean": mean, "ci": (low, high), "n": int(array.size)}
    return summary
