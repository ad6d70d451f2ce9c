"""The ``ragtrim`` command line: ingest, query, bench, tune, config.

User errors print one line to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragtrim.errors import RagtrimError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Trim RAG prompts to the minimum useful context.")
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def _progress(enabled: bool = True):
    """A rich progress display whose callback matches ``ragtrim.index.store.Progress``."""
    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bar.add_task(task, total=total)
            bar.update(tasks[task], completed=done, total=total)

        yield update


def _pipeline_for(index: Path, config: Path | None):
    from ragtrim.pipeline import Pipeline

    if (index / "manifest.json").exists():
        return Pipeline.load(index, config)
    return Pipeline.from_config(config) if config else Pipeline.default()


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="ragtrim JSONL files, Markdown/text files or folders")],
    index: Annotated[Path, typer.Option("--index", help="index folder (created or updated)")],
    config: Annotated[Path | None, typer.Option("--config", help="pipeline config (YAML/JSON)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Chunk, embed and index documents; re-ingesting unchanged documents costs nothing."""
    from ragtrim.loaders import load_documents

    started = time.perf_counter()
    loaded = load_documents(paths)
    for problem in loaded.problems:
        console.print(f"[yellow]skipped:[/yellow] {problem}", highlight=False)
    pipe = _pipeline_for(index, config)
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
        typer.echo(json.dumps(summary))
    else:
        typer.echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in summary.items()))


@app.command()
def query(
    question: Annotated[str, typer.Argument(help="the question")],
    index: Annotated[Path, typer.Option("--index", help="index folder written by 'ragtrim ingest'")],
    task_type: Annotated[str | None, typer.Option("--task-type", help="apply this task profile")] = None,
    filters: Annotated[str | None, typer.Option("--filters", help='metadata filter as JSON, e.g. \'{"product": "relay"}\'')] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="token budget for the prompt")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="override the saved pipeline config")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole TrimResult as JSON")] = False,
) -> None:
    """Print the trimmed prompt for a question (or the whole result with --json)."""
    from ragtrim.pipeline import Pipeline

    if not (index / "manifest.json").exists():
        _fail(f"{index}: no index here; run 'ragtrim ingest ... --index {index}' first")
    parsed = None
    if filters:
        try:
            parsed = json.loads(filters)
        except ValueError as exc:
            _fail(f"--filters: not valid JSON ({exc})")
    pipe = Pipeline.load(index, config)
    result = pipe.run(question, task_type=task_type, filters=parsed, budget=budget)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
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
    config: Annotated[Path | None, typer.Option("--config", help="pipeline config (default: built-in)")] = None,
    sweep: Annotated[Path | None, typer.Option("--sweep", help="sweep file (YAML)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="at most this many queries")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Tokens vs answer quality: baselines and ragtrim systems on one data set."""
    from ragtrim.bench.runner import run_benchmark

    with _progress() as progress:
        summary = run_benchmark(dataset, out, config=config, sweep=sweep, limit=limit, seed=seed, progress=progress)
    typer.echo(summary)


@app.command()
def tune(
    dataset: Annotated[Path, typer.Option("--dataset", help="data set folder or file")],
    out: Annotated[Path, typer.Option("--out", help="where to write the tuned config (YAML)")],
    config: Annotated[Path | None, typer.Option("--config", help="pipeline config to start from")] = None,
    target: Annotated[float, typer.Option("--target", help="keep quality >= target x the best observed")] = 0.95,
    limit: Annotated[int | None, typer.Option("--limit", help="at most this many queries")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Find the cheapest profile per task type that keeps quality, and write it into a config."""
    from ragtrim.bench.tune import tune_profiles

    with _progress() as progress:
        summary = tune_profiles(dataset, out, config=config, target=target, limit=limit, seed=seed, progress=progress)
    typer.echo(summary)


@app.command("config")
def show_config(
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
) -> None:
    """Print the default pipeline config."""
    from ragtrim.config import dump_config
    from ragtrim.pipeline import Pipeline

    if fmt not in ("yaml", "json"):
        _fail(f"--format: expected yaml or json, got {fmt!r}")
    typer.echo(dump_config(Pipeline.default().config, fmt=fmt), nl=False)


def main() -> None:
    try:
        app(standalone_mode=False)
    except RagtrimError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors come through here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
