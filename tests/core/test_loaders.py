"""Reading JSONL files and folders of Markdown/text: metadata from front matter and paths, bad
files reported by path while everything else loads."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from pipeline_support import hash_embedder, tiny_config

from ragtrim.errors import InputError
from ragtrim.loaders import load_documents, split_front_matter
from ragtrim.pipeline import Pipeline


def write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_jsonl_good_lines_load_and_bad_lines_are_reported_by_line(tmp_path: Path) -> None:
    good = [
        {"id": "a", "title": "Alpha", "text": "Alpha text.", "metadata": {"k": 1}},
        {"id": "b", "text": "Beta text."},
    ]
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            json.dumps(good[0]).encode(),
            b"",
            b'{"id": "c", "text": "unterminated',
            json.dumps({"text": "no id"}).encode(),
            '{"id": "d", "text": "caf\u00e9"}'.encode("latin-1"),
            json.dumps(["not", "an", "object"]).encode(),
            json.dumps(good[1]).encode(),
        ],
    )
    report = load_documents([path])
    assert [d.id for d in report.documents] == ["a", "b"]
    assert report.documents[0].metadata == {"k": 1, "title": "Alpha"}
    assert report.sources == [f"{path}:1", f"{path}:7"]
    assert report.problems == [
        f"{path}:3: not valid JSON (Invalid control character at: line 1 column 34 (char 33)), "
        "skipped",
        f"{path}:4: document: missing field 'id', skipped",
        f"{path}:5: not valid UTF-8 (byte 24), skipped",
        f"{path}:6: document: expected a Document or a dict, got list, skipped",
    ]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    (root / "travel" / "europe").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "travel" / "hotels.md").write_text(
        "---\ntitle: Hotel policy\ntags: [travel, hotels]\nupdated: 2025-01-02\n"
        "owner: {name: Ada}\n---\n# Hotels\n\nThe hotel cap in London is 250 GBP per night.\n"
    )
    (root / "travel" / "europe" / "paris.md").write_bytes(
        b"---\r\nid: paris-hotels\r\nregion: europe\r\n---\r\nThe cap in Paris is 220 EUR.\r\n"
    )
    (root / "notes.txt").write_text("Plain notes without front matter.\nSecond line.\n")
    (root / "rule.md").write_text("---\n\nText after a thematic break.\n\n---\n\nMore text.\n")
    (root / "broken.md").write_text("---\ntitle: [unclosed\n---\nBody.\n")
    (root / "latin1.md").write_bytes("Caf\u00e9 cr\u00e8me".encode("latin-1"))
    (root / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "empty.md").write_text("")
    (root / "script.py").write_text("print('not a document')\n")
    (root / ".git" / "HEAD.md").write_text("hidden\n")
    (root / "more.jsonl").write_text(
        json.dumps({"id": "faq", "text": "Q: retention? A: 7 days."}) + "\n"
    )
    return root


def test_a_folder_loads_with_front_matter_and_path_metadata(folder: Path) -> None:
    report = load_documents([folder])
    by_id = {d.id: d for d in report.documents}
    assert sorted(by_id) == ["empty", "faq", "notes", "paris-hotels", "rule", "travel/hotels"]

    hotels = by_id["travel/hotels"]
    assert hotels.text == "# Hotels\n\nThe hotel cap in London is 250 GBP per night.\n"
    assert hotels.metadata == {
        "title": "Hotel policy",
        "tags": ["travel", "hotels"],
        "updated": datetime.date(2025, 1, 2),
        "owner": {"name": "Ada"},
        "path": "travel/hotels.md",
        "folder": "travel",
    }
    paris = by_id["paris-hotels"]  # CRLF front matter, id from front matter
    assert paris.text == "The cap in Paris is 220 EUR.\r\n"
    assert paris.metadata == {
        "region": "europe",
        "title": "paris",
        "path": "travel/europe/paris.md",
        "folder": "travel/europe",
    }
    assert by_id["notes"].metadata == {"title": "notes", "path": "notes.txt"}
    assert by_id["rule"].text.startswith("---\n\nText after")  # a thematic break, not metadata
    assert by_id["empty"].text == ""

    assert report.problems == [
        f"{folder / 'broken.md'}: malformed YAML front matter (line 3), skipped",
        f"{folder / 'image.md'}: binary file (contains NUL bytes), skipped",
        f"{folder / 'latin1.md'}: not valid UTF-8 (byte 3), skipped",
    ]


def test_duplicate_ids_across_files_are_an_error_naming_both(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Markdown.")
    (tmp_path / "a.txt").write_text("Text.")
    with pytest.raises(InputError, match=r"duplicate document ids: 'a' \(.*a\.md and .*a\.txt\)"):
        load_documents([tmp_path])


def test_missing_paths_and_front_matter_edge_cases(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nowhere: no such file or directory"):
        load_documents([tmp_path / "nowhere"])
    assert split_front_matter("---\n---\nbody") == ({}, "body")
    assert split_front_matter("---\na: 1\n...\nbody") == ({"a": 1}, "body")
    assert split_front_matter("---\na: 1\n----\nbody") == ({}, "---\na: 1\n----\nbody")
    assert split_front_matter("text\n---\na: 1\n---\n") == ({}, "text\n---\na: 1\n---\n")
    (tmp_path / "blank-id.md").write_text("---\nid: ''\n---\nx")
    report = load_documents([tmp_path / "blank-id.md"])
    assert report.documents == []
    assert report.problems == [
        f"{tmp_path / 'blank-id.md'}: document: field 'id' must be a non-empty string, got '', "
        "skipped"
    ]


def test_loaded_folders_ingest_filter_and_save(folder: Path, tmp_path: Path) -> None:
    pipe = Pipeline(tiny_config(None, tmp_path / "cache"), embedder=hash_embedder())
    stats = pipe.ingest(load_documents([folder]).documents)
    assert stats.skipped_empty == 1 and pipe.index.n_documents == 5
    result = pipe.run("hotel cap", filters={"tags": {"$contains": "travel"}})
    assert [p.doc_id for p in result.passages] == ["travel/hotels"]
    dated = pipe.run("hotel cap", filters={"updated": {"$gte": "2025-01-01"}, "owner.name": "Ada"})
    assert [p.doc_id for p in dated.passages] == ["travel/hotels"]
    pipe.save(tmp_path / "index")
    loaded = Pipeline.load(tmp_path / "index", embedder=hash_embedder())
    assert loaded.index.document_metadata() == pipe.index.document_metadata()


# ------------------------------------------------------------------ symlinks (issue 15, item 4)
def _linked_folder(tmp_path: Path) -> tuple[Path, Path]:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:the secret line")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.md").write_text("# Guide\n\nA real document.")
    (docs / "passwd.md").symlink_to(secret)
    (docs / "sub" / "alias.md").symlink_to(docs / "guide.md")  # stays inside: followed
    (docs / "outside-dir").symlink_to(secret.parent, target_is_directory=True)
    (secret.parent / "more.md").write_text("also outside")
    return docs, secret


def test_symlinks_out_of_the_folder_are_skipped_by_default(tmp_path: Path) -> None:
    docs, secret = _linked_folder(tmp_path)
    report = load_documents([docs])
    assert sorted(d.id for d in report.documents) == ["guide", "sub/alias"]
    assert all("secret" not in d.text for d in report.documents)
    skipped = [p for p in report.problems if "outside" in p]
    assert any(p.startswith(f"{docs / 'passwd.md'}: symlink to {secret}") for p in skipped)
    # a symlinked folder is not entered, or its files are skipped as outside (Python >= 3.13)
    assert all("also outside" not in d.text for d in report.documents)
    # a link named directly is held to its own folder
    direct = load_documents([docs / "passwd.md"])
    assert direct.documents == [] and "--follow-symlinks" in direct.problems[0]


def test_following_symlinks_is_an_explicit_choice(tmp_path: Path) -> None:
    docs, _ = _linked_folder(tmp_path)
    report = load_documents([docs], follow_symlinks=True)
    assert "passwd" in {d.id for d in report.documents}
    assert any("the secret line" in d.text for d in report.documents)


def test_the_cli_skips_links_out_and_follows_them_with_the_flag(
    tmp_path: Path, tiny_embedder_path: Path
) -> None:
    from typer.testing import CliRunner

    from ragtrim.cli import app

    docs, _ = _linked_folder(tmp_path)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(tiny_embedder_path, tmp_path / "cache")))
    runner = CliRunner()
    base = ["ingest", str(docs), "--config", str(config), "--json"]
    result = runner.invoke(app, [*base, "--index", str(tmp_path / "a")])
    assert result.exit_code == 0, result.stderr
    assert f"skipped: {docs / 'passwd.md'}: symlink to" in " ".join(result.stderr.split())
    assert json.loads(result.stdout)["documents"] == 2
    result = runner.invoke(app, [*base, "--index", str(tmp_path / "b"), "--follow-symlinks"])
    assert result.exit_code == 0, result.stderr
    assert "symlink" not in result.stderr and json.loads(result.stdout)["documents"] > 2
