"""Embeddings: sentence-transformers and callable embedders, and a persistent vector cache."""

from ragtrim.embedding.cache import CachedEmbedder, EmbeddingCache, cache_key
from ragtrim.embedding.models import (
    DEFAULT_EMBEDDING_MODEL,
    CallableEmbedder,
    SentenceTransformerEmbedder,
    l2_normalize,
    model_content_identity,
    resolve_model_source,
)

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "CachedEmbedder",
    "CallableEmbedder",
    "EmbeddingCache",
    "SentenceTransformerEmbedder",
    "cache_key",
    "l2_normalize",
    "model_content_identity",
    "resolve_model_source",
]
