"""ragtrim: trim every RAG prompt to the minimum useful context, under an exact token budget."""

from ragtrim.errors import RagtrimError

__version__ = "0.1.0"

from ragtrim.pipeline import Pipeline  # noqa: E402  (the pipeline imports __version__)
from ragtrim.types import Chunk, Document, Passage, TrimResult  # noqa: E402

__all__ = ["Chunk", "Document", "Passage", "Pipeline", "RagtrimError", "TrimResult", "__version__"]
