"""ragtrim: trim every RAG prompt to the minimum useful context, under an exact token budget."""

from ragtrim.errors import RagtrimError
from ragtrim.types import Chunk, Document, TrimResult

__version__ = "0.1.0"

__all__ = ["Chunk", "Document", "RagtrimError", "TrimResult", "__version__"]
