"""Deduplication: keep the best-ranked copy of repeated text and say what was dropped and why."""

from ragtrim.dedup.deduplicator import Deduplicator, exact_key, merge_overlaps, mmr_order
from ragtrim.dedup.minhash import (
    SimilarPairs,
    estimate_jaccard,
    exact_jaccard,
    shingle_sets,
    signatures,
    similar_pairs,
    similar_texts,
    word_shingles,
)

__all__ = [
    "Deduplicator",
    "SimilarPairs",
    "estimate_jaccard",
    "exact_jaccard",
    "exact_key",
    "merge_overlaps",
    "mmr_order",
    "shingle_sets",
    "signatures",
    "similar_pairs",
    "similar_texts",
    "word_shingles",
]
