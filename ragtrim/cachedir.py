"""Where ragtrim keeps its persistent caches.

The location is per user (``platformdirs``), never inside the installed package: a package
directory is wiped by every reinstall and, for editable installs, is the user's source tree.
``RAGTRIM_CACHE_DIR`` overrides it (CI runners, tests, shared team caches).
"""

from __future__ import annotations

import os
from pathlib import Path

from ragtrim.errors import ConfigError

CACHE_DIR_ENV = "RAGTRIM_CACHE_DIR"

_PACKAGE_DIR = Path(__file__).resolve().parent


def default_cache_dir() -> Path:
    """``$RAGTRIM_CACHE_DIR`` if set and non-empty, else the platform's user cache dir."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        directory = Path(configured).expanduser()
    else:
        import platformdirs

        directory = Path(platformdirs.user_cache_dir("ragtrim"))
    resolved = directory.resolve()
    if resolved == _PACKAGE_DIR or _PACKAGE_DIR in resolved.parents:
        raise ConfigError(
            f"{CACHE_DIR_ENV}: cache directory {str(directory)!r} is inside the installed ragtrim "
            f"package ({_PACKAGE_DIR}); choose a directory outside it"
        )
    return directory
