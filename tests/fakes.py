"""Deterministic stand-ins for collaborators (never for the unit under test)."""

from __future__ import annotations

import hashlib
import re

import numpy as np


class HashingEmbedder:
    """Bag of words hashed into 64 dimensions, L2-normalised: texts sharing words are similar."""

    dimension = 64
    fingerprint = "test:hashing-64"

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts, kind: str = "passage") -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int.from_bytes(
                    hashlib.blake2b(word.encode(), digest_size=4).digest(), "little"
                )
                out[row, bucket % self.dimension] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
        return out
