"""Where rank files come from: each local source, tiktoken's download, and the failures.

Downloads go to a real HTTP server on 127.0.0.1: tiktoken's ``read_file`` is wrapped to send
the blob URL there instead, so tiktoken's own download, hash check and cache write run as they
do online. Tests that must stay offline wrap it to record and refuse any download.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import inspect
import lzma
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
from tiktoken_ext import openai_public

from ragtrim import tokens
from ragtrim.errors import TokenizerError
from ragtrim.tokens import RANKS_ENV, TokenCounter, find_rank_file, load_encoding

TEXTS = [
    "Kestrel Relay 3.4 raised the default max message size to 4 MiB. 日本語 😀",
    "def trim(prompt: str, budget: int = 512) -> str:\n    return prompt[:budget]  # naïve\n",
    "   Ünïcödé  spaces\t\ttabs\n\n\nand 1234567890 digits, don't we'll they're",
    "Привет, мир! مرحبا بالعالم  שלום עולם — नमस्ते दुनिया",
]
# counts of TEXTS by the implementation before this change (rank files from the litellm wheel)
EXPECTED_COUNTS = {
    "o200k_base": [23, 27, 22, 17],
    "o200k_harmony": [23, 27, 22, 17],
    "cl100k_base": [25, 27, 28, 43],
}
ORIGINAL_READ_FILE = tiktoken.load.read_file
PACKAGED_DIR = tokens._PACKAGED_DIR


def rank_bytes(name: str) -> bytes:
    return gzip.decompress((PACKAGED_DIR / f"{name}.tiktoken.gz").read_bytes())


def cache_key(name: str) -> str:
    return tokens._RANK_FILES[name].cache_key


def counts(encoding_name: str) -> list[int]:
    counter = TokenCounter(encoding_name)
    return [counter.count(text) for text in TEXTS]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No RAGTRIM_TIKTOKEN_RANKS, an empty tiktoken cache, and no encoding loaded before."""
    monkeypatch.delenv(RANKS_ENV, raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    cache = tmp_path / "tiktoken-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    load_encoding.cache_clear()
    yield cache
    load_encoding.cache_clear()


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record and refuse every download tiktoken attempts."""
    attempted: list[str] = []

    def refuse(blobpath: str) -> bytes:
        attempted.append(blobpath)
        raise ConnectionError(f"download refused in this test: {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)
    return attempted


@pytest.fixture
def no_packaged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A ragtrim install whose package data is missing."""
    empty = tmp_path / "no-package-data"
    empty.mkdir()
    monkeypatch.setattr(tokens, "_PACKAGED_DIR", empty)
    return empty


class _RankServer:
    """Serves rank files over HTTP on 127.0.0.1 and records the paths requested."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                body = files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _RankServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def _redirect_downloads(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """Send tiktoken's blob downloads to 127.0.0.1:port (same path), through its own reader."""
    blob = "https://openaipublic.blob.core.windows.net"
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    def redirected(blobpath: str) -> bytes:
        assert blobpath.startswith(blob), blobpath
        return ORIGINAL_READ_FILE(f"http://127.0.0.1:{port}" + blobpath[len(blob) :])

    monkeypatch.setattr(tiktoken.load, "read_file", redirected)


def test_hash_table_is_tiktokens_own():
    source = inspect.getsource(openai_public)
    for spec in tokens._RANK_FILES.values():
        assert f'"{spec.url}"' in source
        assert f'expected_hash="{spec.sha256}"' in source
        assert spec.cache_key == hashlib.sha1(spec.url.encode()).hexdigest()
    assert set(tokens._ENCODING_RANK_FILE) <= set(openai_public.ENCODING_CONSTRUCTORS)
    assert tokens._RANK_FILES["o200k_base"].cache_key == "fb374d419588a4632f3f557e76b4b70aebbca790"
    assert tokens._RANK_FILES["cl100k_base"].cache_key == "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base", "o200k_harmony"])
def test_packaged_copy_loads_offline_with_exact_counts(name, downloads):
    found = find_rank_file(name)
    assert found is not None and found.source == "ragtrim package"
    assert found.path.name.endswith(".tiktoken.gz")
    assert counts(name) == EXPECTED_COUNTS[name]
    assert downloads == []


@pytest.mark.parametrize("compression", ["plain", "gzip", "xz"])
def test_env_var_file_any_name_and_compression(compression, tmp_path, monkeypatch, downloads):
    data = rank_bytes("cl100k_base")
    packed = {
        "plain": lambda b: b,
        "gzip": gzip.compress,
        "xz": lambda b: lzma.compress(b, preset=0),
    }[compression](data)
    path = tmp_path / f"my-ranks.{compression}"
    path.write_bytes(packed)
    monkeypatch.setenv(RANKS_ENV, str(path))
    found = find_rank_file("cl100k_base")
    assert found is not None and (found.source, found.path) == (RANKS_ENV, path)
    assert counts("cl100k_base") == EXPECTED_COUNTS["cl100k_base"]
    # the file is cl100k_base's: o200k_base comes from the next source
    other = find_rank_file("o200k_base")
    assert other is not None and other.source == "ragtrim package"
    assert downloads == []


@pytest.mark.parametrize("file_name", ["cl100k_base.tiktoken", "cl100k_base.tiktoken.gz", "key"])
def test_env_var_folder(file_name, tmp_path, monkeypatch, no_packaged, downloads):
    folder = tmp_path / "ranks"
    folder.mkdir()
    data = rank_bytes("cl100k_base")
    if file_name == "key":
        file_name = cache_key("cl100k_base")
    (folder / file_name).write_bytes(gzip.compress(data) if file_name.endswith(".gz") else data)
    monkeypatch.setenv(RANKS_ENV, str(folder))
    found = find_rank_file("cl100k_base")
    assert found is not None and found.path == folder / file_name and found.source == RANKS_ENV
    assert counts("cl100k_base") == EXPECTED_COUNTS["cl100k_base"]
    assert find_rank_file("o200k_base") is None  # not in the folder, nor packaged here
    assert downloads == []


def test_env_var_naming_nothing_is_an_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "o200k_base.tiktoken"
    monkeypatch.setenv(RANKS_ENV, str(missing))
    with pytest.raises(TokenizerError, match=f"{RANKS_ENV}={missing}: no such file or folder"):
        load_encoding("o200k_base")


@pytest.mark.parametrize("where", ["TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR", "tempdir"])
def test_tiktoken_cache(where, tmp_path, monkeypatch, no_packaged, downloads):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    directory = tmp_path / where
    if where == "tempdir":
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        directory = tmp_path / "data-gym-cache"
    else:
        monkeypatch.setenv(where, str(directory))
    directory.mkdir()
    (directory / cache_key("o200k_base")).write_bytes(rank_bytes("o200k_base"))
    found = find_rank_file("o200k_base")
    assert found is not None and found.source == "tiktoken cache"
    assert found.path == directory / cache_key("o200k_base")
    assert counts("o200k_base") == EXPECTED_COUNTS["o200k_base"]
    assert downloads == []


def _corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return (
        data[:middle] + (b"A" if data[middle : middle + 1] != b"A" else b"B") + data[middle + 1 :]
    )


def test_corrupted_env_file_is_rejected_with_its_name(tmp_path, monkeypatch, downloads):
    path = tmp_path / "o200k_base.tiktoken"
    path.write_bytes(_corrupt(rank_bytes("o200k_base")))
    monkeypatch.setenv(RANKS_ENV, str(path))
    with pytest.raises(TokenizerError) as excinfo:
        load_encoding("o200k_base")
    message = str(excinfo.value)
    assert str(path) in message and "hash check" in message and RANKS_ENV in message
    assert downloads == []


def test_corrupted_file_in_env_folder_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "cl100k_base.tiktoken").write_bytes(_corrupt(rank_bytes("cl100k_base")))
    monkeypatch.setenv(RANKS_ENV, str(tmp_path))
    with pytest.raises(TokenizerError, match="cl100k_base.tiktoken .* fails the hash check"):
        load_encoding("cl100k_base")


def test_corrupted_cache_file_is_rejected_and_kept(isolated, downloads):
    isolated.mkdir()
    cached = isolated / cache_key("cl100k_base")
    cached.write_bytes(_corrupt(rank_bytes("cl100k_base")))
    with pytest.raises(TokenizerError) as excinfo:
        load_encoding("cl100k_base")
    message = str(excinfo.value)
    assert str(cached) in message and "tiktoken cache" in message and "delete it" in message
    assert cached.is_file()  # reported, not silently deleted and re-fetched
    assert downloads == []


@pytest.mark.parametrize("damage", ["content", "truncated gzip"])
def test_corrupted_packaged_copy_is_rejected(damage, tmp_path, monkeypatch, downloads):
    package = tmp_path / "package"
    shutil.copytree(tokens._PACKAGED_DIR, package)
    target = package / "cl100k_base.tiktoken.gz"
    if damage == "content":
        target.write_bytes(gzip.compress(_corrupt(rank_bytes("cl100k_base"))))
        expected = "fails the hash check"
    else:
        target.write_bytes(target.read_bytes()[:100_000])
        expected = "not a valid gzip file"
    monkeypatch.setattr(tokens, "_PACKAGED_DIR", package)
    with pytest.raises(TokenizerError) as excinfo:
        load_encoding("cl100k_base")
    message = str(excinfo.value)
    assert str(target) in message and expected in message and "reinstall ragtrim" in message
    assert downloads == []


def test_online_download_goes_through_tiktoken_and_its_cache(isolated, monkeypatch, no_packaged):
    path = "/encodings/cl100k_base.tiktoken"
    with _RankServer({path: rank_bytes("cl100k_base")}) as server:
        _redirect_downloads(monkeypatch, server.port)
        assert find_rank_file("cl100k_base") is None
        assert counts("cl100k_base") == EXPECTED_COUNTS["cl100k_base"]
    assert server.requests == [path]
    # tiktoken cached the download; the next load is offline, from that cache
    cached = isolated / cache_key("cl100k_base")
    assert (
        hashlib.sha256(cached.read_bytes()).hexdigest() == tokens._RANK_FILES["cl100k_base"].sha256
    )
    load_encoding.cache_clear()
    monkeypatch.setattr(tiktoken.load, "read_file", ORIGINAL_READ_FILE)
    found = find_rank_file("cl100k_base")
    assert found is not None and found.source == "tiktoken cache" and found.path == cached
    assert counts("cl100k_base") == EXPECTED_COUNTS["cl100k_base"]


def test_corrupted_download_fails_tiktokens_hash_check(isolated, monkeypatch, no_packaged):
    path = "/encodings/cl100k_base.tiktoken"
    with _RankServer({path: _corrupt(rank_bytes("cl100k_base"))}) as server:
        _redirect_downloads(monkeypatch, server.port)
        with pytest.raises(TokenizerError, match="Hash mismatch"):
            load_encoding("cl100k_base")
    assert server.requests == [path]
    assert not (isolated / cache_key("cl100k_base")).exists()


def test_no_local_file_and_no_download_names_both_remedies(isolated, monkeypatch, no_packaged):
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _redirect_downloads(monkeypatch, port)
    with pytest.raises(TokenizerError) as excinfo:
        load_encoding("o200k_base")
    message = str(excinfo.value)
    assert "'o200k_base' is not available" in message
    assert "download failed (ConnectionError" in message
    assert str(isolated / cache_key("o200k_base")) in message  # what was looked at
    assert "let tiktoken download it" in message  # remedy 1
    assert f"point {RANKS_ENV} at a local copy of o200k_base.tiktoken" in message  # remedy 2


def test_unknown_encoding_lists_the_known_ones():
    with pytest.raises(TokenizerError, match="unknown tiktoken encoding 'o300k'.*cl100k_base"):
        load_encoding("o300k")


def test_encoding_ragtrim_does_not_ship_is_downloaded(isolated, monkeypatch):
    """p50k_base is not packaged: with no local copy, tiktoken's download is the only source."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _redirect_downloads(monkeypatch, port)
    assert find_rank_file("p50k_base") is None
    with pytest.raises(TokenizerError) as excinfo:
        load_encoding("p50k_base")
    message = str(excinfo.value)
    assert "download failed (ConnectionError" in message and "ragtrim install" not in message
    assert f"point {RANKS_ENV} at a local copy of p50k_base.tiktoken" in message


def test_concurrent_loads_and_lookups_see_only_real_sources(isolated, downloads):
    """A load points tiktoken's cache at a private folder for a moment; no lookup may see it."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    stop = threading.Event()
    seen: set[tuple[str, Path]] = set()

    def look() -> None:
        while not stop.is_set():
            found = find_rank_file("cl100k_base")
            assert found is not None
            seen.add((found.source, found.path))

    def load(name: str) -> list[int]:
        encoding = load_encoding.__wrapped__(name)  # bypass the cache: every call loads
        return [len(encoding.encode_ordinary(text)) for text in TEXTS]

    with ThreadPoolExecutor(max_workers=4) as pool:
        lookers = [pool.submit(look) for _ in range(2)]
        results = [pool.submit(load, n) for n in ("o200k_base", "cl100k_base", "o200k_base")]
        counted = [r.result(timeout=120) for r in results]
        stop.set()
        for looker in lookers:
            looker.result(timeout=60)
    assert counted == [EXPECTED_COUNTS[n] for n in ("o200k_base", "cl100k_base", "o200k_base")]
    assert seen == {("ragtrim package", PACKAGED_DIR / "cl100k_base.tiktoken.gz")}
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(isolated)
    assert downloads == []
