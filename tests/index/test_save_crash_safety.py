"""``Pipeline.save`` killed at every file-system event leaves the old or the new index.

A forked child saves a changed pipeline over a saved one, under a hook that counts every
file-system call the save makes (``open``/``os.open``, each ``write``, ``os.fsync``,
``os.replace``/``os.rename``, ``mkdir``, ``unlink``/``rmdir``) and sends itself SIGKILL just
before call number N. A first run counts the calls; then the save is killed before each one
in turn (and once after the last). After every kill the folder must load, checksums verified,
as exactly the old or exactly the new index, switch from old to new once, and take the next
save cleanly.

A save makes about 850 calls, most of them ``write``s of one JSONL file after another. The
default run kills at every call except the inner writes of a run of writes to one file (it
keeps each run's first and last): about 150 kills, 20 s. ``-m slow`` kills at every call.
"""

from __future__ import annotations

import builtins
import io
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import DOCS, hash_embedder, tiny_config

from ragtrim.pipeline import Pipeline
from ragtrim.tokens import get_counter

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

COUNTER = get_counter("o200k_base")
LONDON = "What is the hotel cap in London?"
_FUNCTIONS = ("open", "fsync", "replace", "rename", "mkdir", "unlink", "remove", "rmdir")


class _Events:
    """Counts file-system calls; SIGKILLs this process before call number ``kill_at``."""

    def __init__(self, kill_at: int | None) -> None:
        self.kill_at = kill_at
        self.log: list[str] = []

    def __call__(self, kind: str, what: object = "") -> None:
        self.log.append(f"{kind}\t{id(what) if kind == 'write' else what}")
        if len(self.log) == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


class _CountedFile:
    """A file whose every ``write`` is an event (numpy then writes through ``write`` too)."""

    def __init__(self, handle: Any, events: _Events) -> None:
        self._handle, self._events = handle, events

    def write(self, data: Any) -> int:
        self._events("write", self._handle)
        return self._handle.write(data)

    def __enter__(self) -> _CountedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def _install(events: _Events) -> None:
    real_open = builtins.open

    def counted_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        events("open", file)
        handle = real_open(file, mode, *args, **kwargs)
        return _CountedFile(handle, events) if any(c in mode for c in "wax+") else handle

    builtins.open = io.open = counted_open  # type: ignore[assignment]
    for name in _FUNCTIONS:
        real = getattr(os, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            events(_name, args[0] if args else "")
            return _real(*args, **kwargs)

        setattr(os, name, counted)


def _save_in_child(pipe: Pipeline, target: Path, kill_at: int | None, report: Path) -> int:
    """Fork; the child saves under the hook and exits 0. Returns the child's wait status."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            events = _Events(kill_at)
            _install(events)
            pipe.save(target)
            with io.FileIO(os.open(report, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w") as out:
                out.write("\n".join(events.log).encode())
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def _fingerprint(target: Path, config: dict) -> str:
    loaded = Pipeline.load(target, config, embedder=hash_embedder(), counter=COUNTER)
    assert loaded.run(LONDON).passages  # it answers, not only opens
    return loaded.index.fingerprint


def _kill_points(log: list[str], every: bool) -> list[int]:
    """1-based call numbers to kill before (plus one past the end: after the last call)."""
    points = []
    for i, event in enumerate(log):
        inner_write = (
            event.startswith("write")
            and 0 < i < len(log) - 1
            and log[i - 1] == event
            and log[i + 1] == event
        )
        if every or not inner_write:
            points.append(i + 1)
    return [*points, len(log) + 1]


@pytest.mark.parametrize(
    "every", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["distinct", "every"]
)
def test_a_save_killed_at_every_file_system_event_leaves_old_or_new(
    tmp_path: Path, every: bool
) -> None:
    config = tiny_config(None, tmp_path / "cache", embeddings=False, retrieval=False)
    old = Pipeline(config, embedder=hash_embedder(), counter=COUNTER)
    old.ingest(DOCS[:2])
    pristine = tmp_path / "pristine"
    old.save(pristine)
    new = Pipeline.load(pristine, config, embedder=hash_embedder(), counter=COUNTER)
    new.ingest([DOCS[2], {**DOCS[1], "text": DOCS[1]["text"] + " Taxis are reimbursed."}])
    new.delete([DOCS[0]["id"]])
    old_print, new_print = old.index.fingerprint, new.index.fingerprint
    assert old_print != new_print

    target, report = tmp_path / "index", tmp_path / "events"
    shutil.copytree(pristine, target)
    assert _save_in_child(new, target, None, report) == 0
    log = report.read_text().splitlines()
    total = len(log)
    assert _fingerprint(target, config) == new_print
    kinds = {event.split("\t")[0] for event in log}
    assert {"open", "write", "fsync", "replace", "mkdir"} <= kinds, kinds

    seen = []
    for kill_at in _kill_points(log, every):
        shutil.rmtree(target)
        shutil.copytree(pristine, target)
        status = _save_in_child(new, target, kill_at, report)
        if kill_at <= total:
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, kill_at
        else:
            assert status == 0
        found = _fingerprint(target, config)
        assert found in (old_print, new_print), kill_at
        seen.append("new" if found == new_print else "old")
    switch = seen.index("new")
    assert "old" not in seen[switch:] and switch > 0, seen
    # after the last kill, saving again works and leaves one data folder
    shutil.rmtree(target)
    shutil.copytree(pristine, target)
    _save_in_child(new, target, total // 2, report)
    new.save(target)
    assert _fingerprint(target, config) == new_print
    assert len([p for p in target.iterdir() if p.name.startswith("data-")]) == 1
    assert not [p for p in target.iterdir() if p.name.endswith(".tmp")]
