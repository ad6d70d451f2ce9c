"""The ``ragtrim`` command line: ingest, query, bench, tune, config.

User errors (ragtrim's own errors, unreadable files, bad options) print one line to stderr and
exit with status 2, without a traceback, however the app is invoked (the ``ragtrim`` script,
``python -m ragtrim.cli``, or ``app`` from a test runner).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from ragtrim.errors import RagtrimError

try:  # recent typer vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as _click_errors
except ImportError:
    from click import exceptions as _click_errors  # type: ignore[no-redef]

USER_ERROR = 2

console = Console(stderr=True)


def _fail(message: object) -> None:
    """Print ``error: message`` as one line on stderr and exit with status 2."""
    line = escape(" ".join(str(message).split()))
    console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
    raise typer.Exit(USER_ERROR)


class _UserErrorsAsOneLine(TyperGroup):
    """Turn user errors raised by any command into one stderr line and exit status 2."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Options of ``ragtrim`` itself (``ragtrim --bogus``) are parsed here, before any
        command runs: their errors are one line too, not typer's panel."""
        try:
            return super().parse_args(ctx, args)
        except getattr(_click_errors, "NoArgsIsHelpError", ()):
            raise
        except _click_errors.UsageError as exc:
            _fail(f"{exc.format_message()} (see 'ragtrim --help')")
            raise  # unreachable: _fail exits

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except getattr(_click_errors, "NoArgsIsHelpError", ()):
            raise
        except _click_errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "ragtrim"
            _fail(f"{exc.format_message()} (see '{where} --help')")
        except (RagtrimError, OSError) as exc:
            _fail(exc)
        except RecursionError:
            _fail("input nested too deeply to process")


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays that stage statistics may carry."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


app = typer.Typer(
    cls=_UserErrorsAsOneLine,
    add_completion=False,
    no_args_is_help=True,
    help="Trim RAG prompts to the minimum useful context.",
)


@contextmanager
def _progress(enabled: bool = True):
    """A rich progress display whose callback matches ``ragtrim.index.store.Progress``."""
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        yield update


_UNCHECKED_HELP = (
    "load an index saved by a ragtrim whose manifests had no checksum (trust it first); "
    "saving it again upgrades it"
)


def _pipeline_for(index: Path, config: Path | None, allow_unchecked_manifest: bool = False):
    from ragtrim.pipeline import Pipeline

    if (index / "manifest.json").exists():
        return Pipeline.load(index, config, allow_unchecked_manifest=allow_unchecked_manifest)
    return Pipeline.from_config(config) if config else Pipeline.default()


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="ragtrim JSONL files, Markdown/text files or folders")
    ],
    index: Annotated[Path, typer.Option("--index", help="index folder (created or updated)")],
    config: Annotated[
        Path | None, typer.Option("--config", help="pipeline config (YAML/JSON)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    follow_symlinks: Annotated[
        bool,
        typer.Option(
            "--follow-symlinks", help="also ingest symlinked files that point outside the folder"
        ),
    ] = False,
    allow_unchecked_manifest: Annotated[
        bool, typer.Option("--allow-unchecked-manifest", help=_UNCHECKED_HELP)
    ] = False,
) -> None:
    """Chunk, embed and index documents; re-ingesting unchanged documents costs nothing."""
    from ragtrim.loaders import load_documents

    started = time.perf_counter()
    loaded = load_documents(paths, follow_symlinks=follow_symlinks)
    for problem in loaded.problems:
        line = f"[yellow]skipped:[/yellow] {escape(problem)}"
        console.print(line, highlight=False, soft_wrap=True)
    pipe = _pipeline_for(index, config, allow_unchecked_manifest)
    with _progress(not as_json) as progress:
        stats = pipe.ingest(loaded.documents, progress=progress)
    pipe.save(index)
    summary = {
        "documents": stats.documents,
        "changed": stats.documents - stats.unchanged - stats.skipped_empty,
        "unchanged": stats.unchanged,
        "skipped_empty": stats.skipped_empty,
        "skipped_files": len(loaded.problems),
        "chunks": stats.chunks,
        "tokens": stats.tokens,
        "embedding_cache_hits": stats.embedding_hits,
        "embedding_model_calls": stats.model_calls,
        "index_chunks": len(pipe.index),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if as_json:
        typer.echo(json.dumps({**summary, "problems": loaded.problems}, ensure_ascii=False))
    else:
        typer.echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in summary.items()))


@app.command()
def query(
    question: Annotated[str, typer.Argument(help="the question")],
    index: Annotated[
        Path, typer.Option("--index", help="index folder written by 'ragtrim ingest'")
    ],
    task_type: Annotated[
        str | None, typer.Option("--task-type", help="apply this task profile")
    ] = None,
    filters: Annotated[
        str | None,
        typer.Option("--filters", help='metadata filter as JSON, e.g. \'{"product": "relay"}\''),
    ] = None,
    budget: Annotated[
        int | None, typer.Option("--budget", help="token budget for the prompt")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="override the saved pipeline config")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the whole TrimResult as JSON")
    ] = False,
    allow_unchecked_manifest: Annotated[
        bool, typer.Option("--allow-unchecked-manifest", help=_UNCHECKED_HELP)
    ] = False,
) -> None:
    """Print the trimmed prompt for a question (or the whole result with --json)."""
    from ragtrim.filtering.language import MAX_FILTER_DEPTH, parse_filter
    from ragtrim.pipeline import Pipeline

    if not (index / "manifest.json").exists():
        _fail(f"{index}: no index here; run 'ragtrim ingest ... --index {index}' first")
    parsed: Any = None
    if filters:
        try:
            parsed = json.loads(filters)
        except ValueError as exc:
            _fail(f"--filters: not valid JSON ({exc})")
        except RecursionError:
            _fail(f"--filters: nested too deeply (at most {MAX_FILTER_DEPTH} levels)")
        parse_filter(parsed)  # a bad filter fails before the index is loaded
    pipe = Pipeline.load(index, config, allow_unchecked_manifest=allow_unchecked_manifest)
    result = pipe.run(question, task_type=task_type, filters=parsed, budget=budget)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, default=_json_default))
        return
    typer.echo(result.prompt)
    t = result.tokens
    console.print(
        f"\n[dim]prompt {t.prompt} tokens (context {t.context}; naive top-k context {t.naive}; "
        f"saved {t.saved}); {len(result.passages)} passages[/dim]",
        highlight=False,
    )


@app.command()
def bench(
    dataset: Annotated[Path, typer.Option("--dataset", help="data set folder or file")],
    out: Annotated[Path, typer.Option("--out", help="output folder for results.json/.md/.png")],
    config: Annotated[
        Path | None, typer.Option("--config", help="pipeline config (default: built-in)")
    ] = None,
    sweep: Annotated[Path | None, typer.Option("--sweep", help="sweep file (YAML)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="at most this many queries")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    answerable_only: Annotated[
        bool,
        typer.Option(
            "--answerable-only", help="drop queries without a span answer (e.g. SQuAD 2.0's)"
        ),
    ] = False,
    half: Annotated[
        str | None,
        typer.Option(
            "--half",
            help="only the 'tune' or 'test' half of ragtrim tune's split (held-apart figures "
            "for the learned unit scorer: --half test)",
        ),
    ] = None,
) -> None:
    """Tokens vs answer quality: baselines and ragtrim systems on one data set."""
    from ragtrim.bench.runner import run_benchmark

    if limit is not None and limit < 1:
        _fail(f"--limit: expected a whole number >= 1, got {limit}")
    if half not in (None, "tune", "test"):
        _fail(f"--half: expected 'tune' or 'test', got {half!r}")

    with _progress() as progress:
        summary = run_benchmark(
            dataset,
            out,
            config=config,
            sweep=sweep,
            limit=limit,
            seed=seed,
            answerable_only=answerable_only,
            half=half,
            progress=progress,
        )
    typer.echo(summary)


@app.command()
def tune(
    dataset: Annotated[Path, typer.Option("--dataset", help="data set folder or file")],
    out: Annotated[Path, typer.Option("--out", help="where to write the tuned config (YAML)")],
    config: Annotated[
        Path | None, typer.Option("--config", help="pipeline config to start from")
    ] = None,
    target: Annotated[
        float, typer.Option("--target", help="keep quality >= target x the best observed")
    ] = 0.95,
    search: Annotated[
        Path | None,
        typer.Option(
            "--search",
            help="YAML mapping of 'slot.param' to a list of values (default: built-in grid)",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="at most this many queries")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    answerable_only: Annotated[
        bool,
        typer.Option(
            "--answerable-only", help="drop queries without a span answer (e.g. SQuAD 2.0's)"
        ),
    ] = False,
    prior_queries: Annotated[
        float,
        typer.Option(
            "--prior-queries",
            help="shrink each task type's quality towards all types' (as if N more queries)",
        ),
    ] = 5.0,
    refit_scorer: Annotated[
        bool,
        typer.Option(
            "--refit-scorer",
            help="also refit the packer's unit scorer on the tune half's labels "
            "(written beside --out as .scorer.json)",
        ),
    ] = False,
) -> None:
    """Find the cheapest profile per task type that keeps quality, and write it into a config."""
    from ragtrim.bench.tune import check_tune_arguments, load_search, tune_profiles

    check_tune_arguments(target, prior_queries, limit)
    grid = load_search(search) if search else None
    with _progress() as progress:
        summary = tune_profiles(
            dataset,
            out,
            config=config,
            target=target,
            search=grid,
            limit=limit,
            seed=seed,
            answerable_only=answerable_only,
            prior_queries=prior_queries,
            refit_scorer=refit_scorer,
            progress=progress,
        )
    typer.echo(summary)


@app.command("export-onnx")
def export_onnx(
    out: Annotated[Path, typer.Option("--out", help="new directory for the ONNX model")],
    model: Annotated[
        str, typer.Option("--model", help="model id or local sentence-transformers directory")
    ] = "sentence-transformers/all-MiniLM-L6-v2",
    revision: Annotated[str | None, typer.Option("--revision", help="model revision")] = None,
) -> None:
    """Export a model to ONNX (needs torch) as a directory that OnnxEmbedder runs without it."""
    from ragtrim.embedding.onnx import export_model_dir

    started = time.perf_counter()
    written = export_model_dir(model, out, revision=revision)
    size = sum(p.stat().st_size for p in written.rglob("*") if p.is_file())
    typer.echo(
        f"exported {model} to {written} ({size / 1e6:.1f} MB, "
        f"{time.perf_counter() - started:.1f} s); use it with OnnxEmbedder(model={str(written)!r})"
    )


@app.command("config")
def show_config(
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Print the default pipeline config."""
    from ragtrim.config import PipelineConfig, StageSpec, dump_config
    from ragtrim.pipeline import default_stages

    if fmt not in ("yaml", "json"):
        _fail(f"--format: expected yaml or json, got {fmt!r}")
    stages = {slot: StageSpec(**stage.to_dict()) for slot, stage in default_stages().items()}
    typer.echo(dump_config(PipelineConfig(stages=stages), fmt=fmt), nl=False)


def main() -> None:
    """Entry point of the ``ragtrim`` script."""
    app(prog_name="ragtrim")


if __name__ == "__main__":
    main()
