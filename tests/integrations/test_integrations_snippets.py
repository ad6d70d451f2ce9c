"""The README's integration snippets are these files, executed here verbatim, so they cannot rot.

Each runs from a scratch directory laid out like the repository root after the two commands the
README names: ``ragtrim.yaml`` (here: the default config with the tiny embedder) and ``idx/`` (a
saved index), plus ``corpora/``. The README must show every snippet file verbatim.
"""

from __future__ import annotations

import importlib.util
import runpy
from pathlib import Path

import pytest
import yaml
from integrations_support import REPO, assert_citations, shared_pipeline
from pipeline_support import tiny_config

SNIPPET_DIR = Path(__file__).parent / "snippets"
SNIPPETS = sorted(SNIPPET_DIR.glob("snippet_*.py"))
NEEDS = {
    "snippet_langchain": ("langchain_core", "langchain_classic", "langchain_community"),
    "snippet_llamaindex": ("llama_index.core",),
    "snippet_haystack": ("haystack",),
}
BUDGET = 400


def test_every_snippet_is_known():
    assert {p.stem for p in SNIPPETS} == set(NEEDS)


@pytest.fixture
def run_snippet(tiny_embedder_path, tmp_path_factory, tmp_path, monkeypatch):
    pipe = shared_pipeline(tiny_embedder_path, tmp_path_factory.mktemp("integrations-cache"))
    (tmp_path / "corpora").symlink_to(REPO / "corpora", target_is_directory=True)
    config = tiny_config(tiny_embedder_path, pipe.cache_dir)
    (tmp_path / "ragtrim.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    pipe.save(tmp_path / "idx")
    monkeypatch.chdir(tmp_path)

    def run(name: str) -> dict:
        for module in NEEDS[name]:
            if importlib.util.find_spec(module.split(".")[0]) is None:
                pytest.skip(f"{name} needs {module}")
        return runpy.run_path(str(SNIPPET_DIR / f"{name}.py"), run_name="__main__")

    return pipe, run


@pytest.mark.filterwarnings("ignore:`langchain-community` is being sunset:DeprecationWarning")
def test_langchain_snippet(run_snippet, capsys):
    pipe, run = run_snippet
    ns = run("snippet_langchain")
    chunks = {d.metadata["ragtrim_source_id"]: d for d in ns["trimmed"]}
    assert (
        ns["trimmed"]
        and pipe.counter.count("\n\n".join(d.page_content for d in chunks.values())) <= BUDGET
    )
    assert ns["answer"] == "Port 8470 [1]."
    assert ns["from_index"] and all(d.metadata["ragtrim_citation"] for d in ns["from_index"])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(ns["trimmed"]) and printed[0].startswith("1 ")


def test_llamaindex_snippet(run_snippet):
    pipe, run = run_snippet
    ns = run("snippet_llamaindex")
    nodes = ns["response"].source_nodes
    assert nodes and pipe.counter.count("\n\n".join(n.node.get_content() for n in nodes)) <= BUDGET
    texts = {node_id: node.get_content() for node_id, node in ns["index"].docstore.docs.items()}
    assert_citations([(n.node.get_content(), n.node.metadata) for n in nodes], texts)
    assert ns["response_from_index"].source_nodes


def test_haystack_snippet(run_snippet):
    pipe, run = run_snippet
    ns = run("snippet_haystack")
    docs = ns["result"]["trimmer"]["documents"]
    assert docs and pipe.counter.count(ns["prompt"]) <= BUDGET
    stored = {d.id: d.content for d in ns["store"].filter_documents()}
    assert_citations([(d.content, d.meta) for d in docs], stored)
    assert ns["rag"].get_component("trimmer").budget == BUDGET


def test_readme_shows_every_snippet_verbatim():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    if "\n## Integrations" not in readme:
        pytest.skip("README.md has no '## Integrations' section yet")
    section = readme[readme.index("\n## Integrations") + 1 :]
    following = section.find("\n## ", 1)
    section = section if following < 0 else section[:following]
    for path in SNIPPETS:
        block = "```python\n" + path.read_text(encoding="utf-8") + "```"
        assert block in section, f"README '## Integrations' does not show {path.name} verbatim"
