"""Provenance for benchmark results: which library code produced the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def source_state() -> dict[str, Any]:
    """Which library code produced the numbers: git commit, local edits, source hash."""
    import hashlib
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unavailable"

    digest = hashlib.sha256()
    for path in sorted((REPO / "ragtrim").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "ragtrim_uncommitted_changes": bool(git("status", "--porcelain", "ragtrim")),
        "ragtrim_source_sha256": digest.hexdigest()[:16],
    }


def code_line(env: dict[str, Any]) -> str:
    edits = " plus uncommitted edits" if env.get("ragtrim_uncommitted_changes") else ""
    return (
        f"Code: commit {str(env.get('git_commit', 'unknown'))[:12]}{edits} (ragtrim source "
        f"sha256 {env.get('ragtrim_source_sha256', 'unknown')})."
    )


def footer(env: dict[str, Any], *packages: str) -> list[str]:
    """The closing lines of a results page: the code line, then Python, the named package
    versions and the platform."""
    shown = ", ".join([f"Python {env['python']}", *(f"{p} {env[p]}" for p in packages)])
    return [code_line(env), "", f"Environment: {shown}, {env['platform']}.", ""]


def environment(**versions: Any) -> dict[str, Any]:
    """What a result file records about the code and machine: provenance, Python, the given
    package versions, the platform."""
    import platform
    import sys

    return {
        **source_state(),
        "python": sys.version.split()[0],
        **versions,
        "platform": platform.platform(),
    }


def write_results(directory: Path, stem: str, result: dict[str, Any], render) -> Path:
    """``<stem>.json`` (every number) and ``<stem>.md`` (the tables) side by side."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    markdown = directory / f"{stem}.md"
    markdown.write_text(render(result), "utf-8")
    return markdown
