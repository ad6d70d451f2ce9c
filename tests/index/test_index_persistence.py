import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ragtrim.errors import IndexStoreError
from ragtrim.index.persistence import read_index_dir, write_index_dir


def _writer(payload: bytes):
    def write(directory):
        (directory / "blob.bin").write_bytes(payload)
        np.save(directory / "array.npy", np.arange(10), allow_pickle=False)

    return write


def test_round_trip_and_stale_data_removed(tmp_path):
    write_index_dir(tmp_path, _writer(b"first"), {"name": "one"})
    write_index_dir(tmp_path, _writer(b"second"), {"name": "two"})
    manifest, data = read_index_dir(tmp_path)
    assert manifest["name"] == "two" and (data / "blob.bin").read_bytes() == b"second"
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("data-")]) == 1


def test_failed_write_leaves_previous_index(tmp_path):
    write_index_dir(tmp_path, _writer(b"good"), {"name": "good"})

    def broken(directory):
        (directory / "partial.bin").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_index_dir(tmp_path, broken, {"name": "bad"})
    manifest, data = read_index_dir(tmp_path)
    assert manifest["name"] == "good" and (data / "blob.bin").read_bytes() == b"good"


def test_checksum_mismatch_and_missing_files_are_named(tmp_path):
    write_index_dir(tmp_path, _writer(b"payload"), {})
    _, data = read_index_dir(tmp_path)
    (data / "blob.bin").write_bytes(b"tampered")
    with pytest.raises(IndexStoreError, match="blob.bin: checksum mismatch"):
        read_index_dir(tmp_path)
    (data / "blob.bin").unlink()
    with pytest.raises(IndexStoreError, match="blob.bin: missing file"):
        read_index_dir(tmp_path)


def test_unknown_format_version_and_missing_manifest(tmp_path):
    with pytest.raises(IndexStoreError, match="manifest.json: not found"):
        read_index_dir(tmp_path)
    write_index_dir(tmp_path, _writer(b"x"), {})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="format version 99"):
        read_index_dir(tmp_path)


def test_kill_9_mid_save_leaves_previous_index_loadable(tmp_path):
    """A real SIGKILL while the second save is writing its data folder."""
    write_index_dir(tmp_path, _writer(b"previous"), {"name": "previous"})
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from ragtrim.index.persistence import write_index_dir

        def slow(directory):
            for i in range(10_000):
                with open(directory / f"part-{{i}}.bin", "wb") as handle:
                    handle.write(b"x" * 65536)

        write_index_dir(Path({str(tmp_path)!r}), slow, {{"name": "next"}})
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline:
        partial = [p for p in tmp_path.glob("data-*") if any(p.glob("part-1*.bin"))]
        if partial:
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert partial, "the writer never started writing"
    manifest, data = read_index_dir(tmp_path)
    assert manifest["name"] == "previous" and (data / "blob.bin").read_bytes() == b"previous"
    # the next save cleans up the abandoned data folder
    write_index_dir(tmp_path, _writer(b"after"), {"name": "after"})
    assert len(list(tmp_path.glob("data-*"))) == 1
