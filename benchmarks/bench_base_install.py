"""The base install (``pip install ragtrim``, no extras): no torch, its size, and a real run.

Run from the repository root with the project's .venv (which has torch, for the export):
``python benchmarks/bench_base_install.py``. Needs the package index (pip). Steps:

1. ``python3 -m venv /tmp/base`` and ``/tmp/base/bin/pip install <repo>`` (timed); the
   installed distributions must include no torch, sentence-transformers, transformers or
   nvidia-*/cuda-* package;
2. ``du`` of the venv;
3. ``ragtrim export-onnx`` with *this* interpreter (torch) writes the MiniLM ONNX directory;
4. in the base venv (working directory /tmp, so the installed package is imported):
   ``python -m ragtrim.cli ingest corpora/kestrel/corpus.jsonl --index /tmp/idx`` and
   ``query`` with an OnnxEmbedder (int8) config, and ``Pipeline.trim`` in a script;
5. the venv and the index are deleted.

The token encodings come from tiktoken's cache directory (``TIKTOKEN_CACHE_DIR``, pointed at
the rank files this interpreter finds), since the base install has no offline rank files of
its own in this branch. Writes ``benchmarks/results/base_install.{json,md}`` and re-renders
``embedders.md`` (which includes it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _provenance import environment, write_results

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
VENV = Path("/tmp/base")
INDEX = Path("/tmp/idx")
WORK = Path("/tmp/ragtrim-base-work")
HEAVY_PREFIXES = ("torch", "sentence-transformers", "sentence_transformers", "transformers")
HEAVY_FAMILIES = ("nvidia-", "cuda-", "triton")
QUESTION = "Which port does the Relay REST admin API listen on by default?"


def run(command: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done, seconds


def du_bytes(path: Path) -> int:
    done, _ = run(["du", "-sb", str(path)])
    return int(done.stdout.split()[0])


def main() -> None:
    for path in (VENV, INDEX, WORK):
        shutil.rmtree(path, ignore_errors=True)
    WORK.mkdir(parents=True)
    result: dict[str, Any] = {}
    try:
        run(["python3", "-m", "venv", str(VENV)])
        pip = [str(VENV / "bin" / "python"), "-m", "pip"]
        _, seconds = run([*pip, "install", "-q", str(REPO)])
        result["pip_install_seconds"] = round(seconds, 1)
        listed, _ = run([*pip, "list", "--format", "json"])
        names = sorted(p["name"].lower() for p in json.loads(listed.stdout))
        heavy = [n for n in names if n.startswith(HEAVY_PREFIXES + HEAVY_FAMILIES)]
        result["distributions"] = len(names)
        result["heavy_distributions"] = heavy
        result["venv_bytes"] = du_bytes(VENV)
        site = next((VENV / "lib").glob("python3*/site-packages"))
        largest = sorted(
            ((du_bytes(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True
        )[:6]
        result["largest_packages_mb"] = {name: round(size / 1e6, 1) for size, name in largest}
        if heavy:
            raise SystemExit(f"the base install pulled {heavy}")

        model_dir = WORK / "minilm-onnx"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGTRIM_CACHE_DIR": str(WORK / "cache")}
        _, seconds = run(
            [sys.executable, "-m", "ragtrim.cli", "export-onnx", "--out", str(model_dir)],
            cwd=REPO,
            env=env,
        )
        result["export_seconds"] = round(seconds, 1)
        result["export_mb"] = round(du_bytes(model_dir) / 1e6, 1)

        from ragtrim.pipeline import default_stages
        from ragtrim.tokens import find_rank_file

        rank_file = find_rank_file("o200k_base")
        if rank_file is None:
            raise SystemExit("no local o200k_base rank file for the base venv")
        stages = {slot: stage.to_dict() for slot, stage in default_stages().items()}
        stages["embedder"] = {
            "type": "OnnxEmbedder",
            "init_parameters": {"model": str(model_dir), "precision": "int8"},
        }
        config = WORK / "onnx.json"
        config.write_text(json.dumps({"stages": stages}, indent=2), encoding="utf-8")
        base_env = {
            **env,
            "TIKTOKEN_CACHE_DIR": str(rank_file.parent),
            "RAGTRIM_CACHE_DIR": str(WORK / "base-cache"),
        }
        python = str(VENV / "bin" / "python")
        cli = [python, "-m", "ragtrim.cli"]
        corpus = str(REPO / "corpora" / "kestrel" / "corpus.jsonl")
        done, seconds = run(
            [*cli, "ingest", corpus, "--index", str(INDEX), "--config", str(config), "--json"],
            cwd="/tmp",
            env=base_env,
        )
        result["ingest"] = {**json.loads(done.stdout), "wall_seconds": round(seconds, 1)}
        done, seconds = run(
            [*cli, "query", QUESTION, "--index", str(INDEX), "--json"], cwd="/tmp", env=base_env
        )
        answer = json.loads(done.stdout)
        result["query"] = {
            "question": QUESTION,
            "wall_seconds": round(seconds, 1),
            "passages": len(answer["passages"]),
            "context_tokens": answer["tokens"]["context"],
            "answer_in_context": "8470" in answer["context"],
        }
        script = (
            "import json, sys, time\n"
            "started = time.perf_counter()\n"
            "import ragtrim\n"
            "imported = time.perf_counter() - started\n"
            f"pipe = ragtrim.Pipeline.from_config({str(config)!r})\n"
            f"docs = [json.loads(l) for l in open({corpus!r})][:10]\n"
            f"result = pipe.trim({QUESTION!r}, docs, budget=300)\n"
            "heavy = [m for m in ('torch', 'sentence_transformers') if m in sys.modules]\n"
            "print(json.dumps({'import_seconds': round(imported, 2), 'heavy_modules': heavy,\n"
            "    'passages': len(result.passages), 'context_tokens': result.tokens.context,\n"
            "    'naive_tokens': result.tokens.naive,\n"
            "    'answer_in_context': '8470' in result.context,\n"
            "    'embedder': pipe.embedder.fingerprint}))\n"
        )
        done, seconds = run([python, "-c", script], cwd="/tmp", env=base_env)
        result["trim"] = {**json.loads(done.stdout), "wall_seconds": round(seconds, 1)}
    finally:
        for path in (VENV, INDEX, WORK):
            shutil.rmtree(path, ignore_errors=True)
        result["cleaned_up"] = not VENV.exists()
    result["environment"] = environment()
    write_results(RESULTS, "base_install", result, render)
    embedders = RESULTS / "embedders.json"
    if embedders.is_file():
        import bench_embedders

        (RESULTS / "embedders.md").write_text(
            bench_embedders.render(json.loads(embedders.read_text("utf-8"))), "utf-8"
        )
    print(render(result))


def render(r: dict[str, Any]) -> str:
    ingest, query, trim = r["ingest"], r["query"], r["trim"]
    packages = ", ".join(f"{n} {mb} MB" for n, mb in r["largest_packages_mb"].items())
    return "\n".join(
        [
            "# The base install, without torch",
            "",
            "Generated by `python benchmarks/bench_base_install.py` (a fresh `python3 -m venv "
            "/tmp/base`, `pip install <repo>` with no extras, deleted afterwards), on the same "
            "shared machine.",
            "",
            "| what | figure |",
            "|---|---|",
            f"| `pip install` (no extras) | {r['pip_install_seconds']} s, "
            f"{r['distributions']} distributions |",
            f"| torch / sentence-transformers / transformers / nvidia-* installed | "
            f"{', '.join(r['heavy_distributions']) or 'none'} |",
            f"| venv size (`du`) | {r['venv_bytes'] / 1e6:.0f} MB |",
            f"| largest packages | {packages} |",
            f"| `ragtrim export-onnx` (with torch, once) | {r['export_seconds']} s, "
            f"{r['export_mb']} MB directory |",
            f"| `ragtrim ingest corpora/kestrel/corpus.jsonl` (OnnxEmbedder int8) | "
            f"{ingest['documents']} documents, {ingest['chunks']} chunks, "
            f"{ingest['wall_seconds']} s wall |",
            f"| `ragtrim query` | {query['passages']} passages, {query['context_tokens']} "
            f"context tokens, answer in context: {query['answer_in_context']}, "
            f"{query['wall_seconds']} s wall |",
            f"| `Pipeline.trim` (10 documents, budget 300) | {trim['passages']} passages, "
            f"{trim['context_tokens']} of {trim['naive_tokens']} naive tokens, answer in "
            f"context: {trim['answer_in_context']}; torch modules loaded: "
            f"{trim['heavy_modules'] or 'none'}; `import ragtrim` {trim['import_seconds']} s |",
            "",
            "The ONNX directory was exported where torch is installed and passed as "
            "`model=`; the token encodings came from tiktoken's cache directory "
            "(`TIKTOKEN_CACHE_DIR`).",
            "",
        ]
    )


if __name__ == "__main__":
    main()
