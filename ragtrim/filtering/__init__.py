"""Metadata filtering applied before top-k: the filter language and the stage that turns a
filter into the allowed-rows mask every retriever honours."""

from ragtrim.filtering.language import COMBINATORS, OPERATORS, Filter, combine, parse_filter
from ragtrim.filtering.stage import MetadataFilter

__all__ = ["COMBINATORS", "OPERATORS", "Filter", "MetadataFilter", "combine", "parse_filter"]
