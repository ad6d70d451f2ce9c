"""OnnxEmbedder on the tiny model: export, cache, parity with sentence-transformers, identity.

The tiny BERT (conftest) is exported through the real torch exporter and run through the real
ONNX Runtime; nothing is mocked. The real MiniLM is in test_embedding_onnx_minilm.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ragtrim.embedding import CachedEmbedder, EmbeddingCache, OnnxEmbedder
from ragtrim.embedding.models import SentenceTransformerEmbedder
from ragtrim.embedding.onnx import export_model_dir
from ragtrim.errors import ConfigError, IndexStoreError
from ragtrim.pipeline import Pipeline, default_stages
from ragtrim.stage import Stage, available_stages

TEXTS = [
    "A cat sits on the mat.",
    "Quarterly revenue grew by 4 percent, driven by the relay product line.",
    "The Eiffel Tower is in Paris.",
    "x",
]
#: longer than the tiny model's 128-token limit
LONG = " ".join(f"word{i}" for i in range(300))

#: blocks torch and sentence-transformers in a subprocess: importing them raises
BLOCKER = textwrap.dedent(
    """
    import sys

    class _Block:
        BLOCKED = ("torch", "sentence_transformers", "transformers")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"blocked import of {name}", name=name)
            return None

    sys.meta_path.insert(0, _Block())
    """
)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def tiny_st(tiny_embedder_path: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(model=str(tiny_embedder_path))


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def tiny_fp32(tiny_embedder_path: Path, onnx_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder(model=str(tiny_embedder_path), precision="fp32", onnx_dir=str(onnx_dir))


@pytest.fixture(scope="module")
def exported_dir(tiny_embedder_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "tiny-onnx"
    return export_model_dir(
        str(tiny_embedder_path), out, onnx_dir=str(tmp_path_factory.mktemp("export-cache"))
    )


def run_python(script: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )


# --- export and cache ---------------------------------------------------------------------


def test_export_then_cache_round_trip(tiny_fp32: OnnxEmbedder, tiny_embedder_path: Path) -> None:
    first = tiny_fp32.embed(TEXTS)
    graph = tiny_fp32.graph()
    assert graph.name == "model.fp32.onnx" and graph.is_file()
    assert not list(graph.parent.glob("*.tmp")), "a temporary file was left behind"
    before = graph.stat()
    again = OnnxEmbedder(
        model=str(tiny_embedder_path), precision="fp32", onnx_dir=tiny_fp32.config.onnx_dir
    )
    np.testing.assert_array_equal(again.embed(TEXTS), first)
    after = again.graph().stat()
    # a re-export would have renamed a new file onto the path
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_int8_is_quantised_from_fp32_and_cached(
    tiny_fp32: OnnxEmbedder, tiny_embedder_path: Path
) -> None:
    int8 = OnnxEmbedder(
        model=str(tiny_embedder_path), precision="int8", onnx_dir=tiny_fp32.config.onnx_dir
    )
    vectors = int8.embed(TEXTS)
    graph = int8.graph()
    assert graph.name == "model.int8.onnx" and graph.parent == tiny_fp32.graph().parent
    assert graph.stat().st_size < tiny_fp32.graph().stat().st_size
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(vectors, tiny_fp32.embed(TEXTS))


def test_int8_vectors_do_not_depend_on_the_batch(
    tiny_fp32: OnnxEmbedder, tiny_embedder_path: Path
) -> None:
    int8 = OnnxEmbedder(
        model=str(tiny_embedder_path), precision="int8", onnx_dir=tiny_fp32.config.onnx_dir
    )
    together = int8.embed([*TEXTS, LONG])
    alone = np.vstack([int8.embed([text]) for text in [*TEXTS, LONG]])
    np.testing.assert_array_equal(together, alone)
    with pytest.raises(ConfigError, match="OnnxEmbedder.batch_size: .*int8 embeds one text"):
        OnnxEmbedder(precision="int8", batch_size=8)


def test_exported_directory_runs_without_the_source(
    exported_dir: Path, tiny_fp32: OnnxEmbedder, tmp_path: Path
) -> None:
    assert (exported_dir / "onnx" / "model.onnx").is_file()
    assert not list(exported_dir.rglob("*.safetensors"))
    moved = tmp_path / "moved"
    shutil.copytree(exported_dir, moved)
    embedder = OnnxEmbedder(model=str(moved), precision="fp32", onnx_dir=str(tmp_path / "cache"))
    assert embedder.graph() == moved / "onnx" / "model.onnx"
    np.testing.assert_allclose(embedder.embed(TEXTS), tiny_fp32.embed(TEXTS), atol=1e-6)
    with pytest.raises(ConfigError, match="already exists"):
        export_model_dir(str(moved), moved)


# --- parity with sentence-transformers ----------------------------------------------------


def test_fp32_matches_sentence_transformers(
    tiny_fp32: OnnxEmbedder, tiny_st: SentenceTransformerEmbedder
) -> None:
    # a literal [SEP] past the limit must be cut like any content, as transformers does
    texts = [*TEXTS, LONG, LONG + " [SEP] [SEP]"]
    assert cosines(tiny_fp32.embed(texts), tiny_st.embed(texts)).min() > 0.9999
    query = tiny_fp32.embed(["a question"], kind="query")
    assert cosines(query, tiny_st.embed(["a question"], kind="query")).min() > 0.9999


def test_truncation_is_counted_like_the_torch_embedder(
    tiny_embedder_path: Path, onnx_dir: Path, tiny_st: SentenceTransformerEmbedder
) -> None:
    embedder = OnnxEmbedder(model=str(tiny_embedder_path), precision="fp32", onnx_dir=str(onnx_dir))
    assert embedder.max_tokens == tiny_st.max_tokens == 128
    assert embedder.count_model_tokens([LONG, "x"]) == tiny_st.count_model_tokens([LONG, "x"])
    embedder.embed([LONG, "x", LONG])
    assert embedder.truncated_texts == 2


def test_prefixes_and_max_seq_length(tiny_embedder_path: Path, onnx_dir: Path) -> None:
    common = {"model": str(tiny_embedder_path), "precision": "fp32", "onnx_dir": str(onnx_dir)}
    plain = OnnxEmbedder(**common)
    prefixed = OnnxEmbedder(**common, query_prefix="query: ")
    np.testing.assert_allclose(
        prefixed.embed(["cats"], kind="query"), plain.embed(["query: cats"]), atol=1e-6
    )
    short = OnnxEmbedder(**common, max_seq_length=8)
    assert short.max_tokens == 8
    with pytest.raises(ConfigError, match="max_seq_length: 999 exceeds the 128-token limit"):
        OnnxEmbedder(**common, max_seq_length=999).warm_up()


# --- identity -----------------------------------------------------------------------------


def test_fingerprints_differ_across_backends_and_precisions(
    tiny_embedder_path: Path, onnx_dir: Path, tiny_st: SentenceTransformerEmbedder
) -> None:
    common = {"model": str(tiny_embedder_path), "onnx_dir": str(onnx_dir)}
    prints = {
        "st": tiny_st.fingerprint,
        "fp32": OnnxEmbedder(**common, precision="fp32").fingerprint,
        "int8": OnnxEmbedder(**common, precision="int8").fingerprint,
        "fp32-short": OnnxEmbedder(**common, precision="fp32", max_seq_length=64).fingerprint,
    }
    assert len(set(prints.values())) == len(prints), prints
    assert prints["fp32"].startswith("onnx-fp32:") and prints["int8"].startswith("onnx-int8:")
    # threads and batch size do not change vectors, so they do not change the identity
    same = OnnxEmbedder(**common, precision="fp32", threads=1, batch_size=4)
    assert same.fingerprint == prints["fp32"]


def test_embedding_cache_never_serves_another_backends_vectors(
    tiny_fp32: OnnxEmbedder, tiny_st: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    with EmbeddingCache(tmp_path) as cache:
        CachedEmbedder(tiny_st, cache).embed(TEXTS)
        onnx = CachedEmbedder(tiny_fp32, cache)
        onnx.embed(TEXTS)
        assert (onnx.hits, onnx.misses) == (0, len(TEXTS))


def test_saved_index_refuses_the_other_backend(
    tiny_embedder_path: Path, onnx_dir: Path, tmp_path: Path
) -> None:
    def config(embedder: Stage) -> dict:
        stages = {k: v.to_dict() for k, v in default_stages().items()}
        stages["embedder"] = embedder.to_dict()
        return {"stages": stages, "cache": {"directory": str(tmp_path / "cache")}}

    torch_backend = SentenceTransformerEmbedder(model=str(tiny_embedder_path))
    pipe = Pipeline(config(torch_backend))
    pipe.ingest([{"id": "d1", "text": "Relay keys rotate every 90 days. Owners may revoke them."}])
    pipe.save(tmp_path / "index")
    onnx_backend = OnnxEmbedder(
        model=str(tiny_embedder_path), precision="fp32", onnx_dir=str(onnx_dir)
    )
    with pytest.raises(IndexStoreError, match="onnx-fp32:"):
        Pipeline.load(tmp_path / "index", config(onnx_backend))


# --- the stage contract and unsupported models --------------------------------------------


def test_registered_and_round_trips() -> None:
    assert "OnnxEmbedder" in available_stages("embedder")
    stage = OnnxEmbedder(precision="fp32", threads=2)
    assert Stage.from_dict(stage.to_dict()) == stage
    with pytest.raises(ConfigError, match="OnnxEmbedder.precision"):
        OnnxEmbedder(precision="fp16")


def test_unsupported_module_names_modules_json(tiny_embedder_path: Path, tmp_path: Path) -> None:
    model = tmp_path / "with-dense"
    shutil.copytree(tiny_embedder_path, model)
    modules = json.loads((model / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "x.models.Dense"})
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match=r"modules.json: module 'x.models.Dense' is not"):
        OnnxEmbedder(model=str(model), onnx_dir=str(tmp_path / "c")).warm_up()


def test_unsupported_pooling_names_the_file(tiny_embedder_path: Path, tmp_path: Path) -> None:
    model = tmp_path / "weighted"
    shutil.copytree(tiny_embedder_path, model)
    pooling = model / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({"embedding_dimension": 32, "pooling_mode": "weightedmean"}))
    with pytest.raises(ConfigError, match="1_Pooling/config.json: pooling_mode 'weightedmean'"):
        OnnxEmbedder(model=str(model), onnx_dir=str(tmp_path / "c")).warm_up()


# --- torch is optional ----------------------------------------------------------------------


def test_base_import_graph_has_no_torch(exported_dir: Path, tmp_path: Path) -> None:
    """import ragtrim, build the default pipeline with the ONNX embedder, trim(): no torch."""
    script = BLOCKER + textwrap.dedent(
        f"""
        import ragtrim
        light = [m for m in ("onnxruntime", "tokenizers", "faiss") if m in sys.modules]
        assert not light, f"import ragtrim loaded {{light}}"
        from ragtrim.pipeline import default_stages
        from ragtrim.embedding import OnnxEmbedder
        stages = {{k: v.to_dict() for k, v in default_stages().items()}}
        embedder = OnnxEmbedder(
            model={str(exported_dir)!r}, precision="int8", onnx_dir={str(tmp_path / "onnx")!r}
        )
        stages["embedder"] = embedder.to_dict()
        pipe = ragtrim.Pipeline({{"stages": stages, "cache": {{"directory": {str(tmp_path)!r}}}}})
        docs = [
            {{"id": "a", "text": "Relay API keys rotate every 90 days. Owners can revoke keys."}},
            {{"id": "b", "text": "Invoices are issued on the first day of each month."}},
        ]
        result = pipe.trim("How often do API keys rotate?", docs, budget=200)
        assert result.passages and result.tokens.context > 0, result
        heavy = [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]
        assert not heavy, heavy
        print("ok", pipe.embedder.fingerprint)
        """
    )
    out = run_python(script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok onnx-int8:")


def test_without_torch_a_missing_graph_names_the_extra_and_the_command(
    tiny_embedder_path: Path, tmp_path: Path
) -> None:
    script = BLOCKER + textwrap.dedent(
        f"""
        from ragtrim.embedding import OnnxEmbedder
        from ragtrim.errors import MissingDependencyError
        try:
            OnnxEmbedder(model={str(tiny_embedder_path)!r}, onnx_dir={str(tmp_path)!r}).warm_up()
        except MissingDependencyError as exc:
            print(exc)
        """
    )
    out = run_python(script)
    assert out.returncode == 0, out.stderr
    assert "pip install 'ragtrim[torch]'" in out.stdout
    assert "ragtrim export-onnx --model" in out.stdout


def test_without_torch_the_torch_stages_name_the_extra(tiny_embedder_path: Path) -> None:
    script = BLOCKER + textwrap.dedent(
        f"""
        from ragtrim.embedding import SentenceTransformerEmbedder
        from ragtrim.reranking.cross_encoder import CrossEncoderReranker
        from ragtrim.errors import MissingDependencyError
        for stage in (
            SentenceTransformerEmbedder(model={str(tiny_embedder_path)!r}),
            CrossEncoderReranker(),
        ):
            try:
                stage.warm_up()
            except MissingDependencyError as exc:
                print(type(stage).__name__, exc)
        """
    )
    out = run_python(script)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all("pip install 'ragtrim[torch]'" in line for line in lines)


def test_export_onnx_command(tiny_embedder_path: Path, tmp_path: Path, tmp_cache_dir: Path) -> None:
    from typer.testing import CliRunner

    from ragtrim.cli import app

    runner = CliRunner()
    out = tmp_path / "exported"
    args = ["export-onnx", "--model", str(tiny_embedder_path), "--out", str(out)]
    done = runner.invoke(app, args, prog_name="ragtrim")
    assert done.exit_code == 0, done.stderr
    assert (out / "onnx" / "model.onnx").is_file() and f"model={str(out)!r}" in done.stdout
    again = runner.invoke(app, args, prog_name="ragtrim")
    assert again.exit_code == 2 and "already exists" in again.stderr
