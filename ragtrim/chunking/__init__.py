"""Chunking: Markdown-aware, token-bounded, sentence-annotated chunks of documents."""

from ragtrim.chunking.chunkers import (
    SentenceWindowChunker,
    StructureChunker,
    TokenChunker,
    block_sentences,
    split_on_tokens,
)
from ragtrim.chunking.markdown import Block, parse_blocks
from ragtrim.chunking.sentences import split_lines, split_sentences

__all__ = [
    "Block",
    "SentenceWindowChunker",
    "StructureChunker",
    "TokenChunker",
    "block_sentences",
    "parse_blocks",
    "split_lines",
    "split_on_tokens",
    "split_sentences",
]
