"""One exception hierarchy, so callers can catch ``RagtrimError`` and nothing else.

Every message names the offending field, value or file: a user reading one line must know
what to fix.
"""

from __future__ import annotations


class RagtrimError(Exception):
    """Base class of every error ragtrim raises on purpose."""


class ConfigError(RagtrimError, ValueError):
    """A configuration value, stage parameter or config file is invalid."""


class InputError(RagtrimError, ValueError):
    """A document, query, candidate or data file given to ragtrim is invalid."""


class FilterError(InputError):
    """A metadata filter is malformed; ``path`` points inside the filter tree."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"filter {path}: {message}")


class BudgetError(InputError):
    """A token budget cannot be met (too small, negative, or larger than the model window)."""


class TokenizerError(RagtrimError):
    """A token encoding could not be loaded; the message names the encoding and the remedy."""


class IndexStoreError(RagtrimError):
    """A saved index is missing files, corrupted, or incompatible with this configuration."""


class MissingDependencyError(RagtrimError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def missing_extra(package: str, extra: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"{package} is not installed; install it with: pip install 'ragtrim[{extra}]'"
    )
