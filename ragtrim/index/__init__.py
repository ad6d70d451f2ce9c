"""Indexes over chunks: BM25 (sparse term weights) and dense vectors, with tombstone deletes.

Rows are numbered in insertion order and shared by every index of one collection, so a filter
mask over rows applies to all of them before their top-k.
"""
