"""Embeddings: sentence-transformers, ONNX Runtime and callable embedders, and a vector cache."""

from ragtrim.embedding.cache import CachedEmbedder, EmbeddingCache, cache_key
from ragtrim.embedding.models import (
    DEFAULT_EMBEDDING_MODEL,
    CallableEmbedder,
    SentenceTransformerEmbedder,
    l2_normalize,
    model_content_identity,
    resolve_model_source,
)
from ragtrim.embedding.onnx import OnnxEmbedder

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "CachedEmbedder",
    "CallableEmbedder",
    "EmbeddingCache",
    "OnnxEmbedder",
    "SentenceTransformerEmbedder",
    "cache_key",
    "l2_normalize",
    "model_content_identity",
    "resolve_model_source",
]
