"""End-to-end Pipeline behaviour on bad input: typed errors naming the field and value, no
partial state, and defined empty results where the input is legal but finds nothing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pipeline_support import DOCS, tiny_config

import ragtrim
from ragtrim.errors import BudgetError, FilterError, InputError, RagtrimError
from ragtrim.pipeline import Pipeline

LONDON = "What is the hotel cap in London?"


@pytest.fixture(scope="module")
def pipe(tiny_embedder_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    pipeline = Pipeline(tiny_config(tiny_embedder_path, tmp_path_factory.mktemp("cache")))
    pipeline.ingest(DOCS)
    return pipeline


@pytest.fixture
def empty(tiny_embedder_path: Path, tmp_path: Path) -> Pipeline:
    return Pipeline(tiny_config(tiny_embedder_path, tmp_path / "cache"))


def state(pipeline: Pipeline) -> tuple:
    index = pipeline.index
    return (index.fingerprint, len(index), len(index.chunks), index.n_documents, len(index.bm25))


def test_a_good_query_for_reference(pipe: Pipeline) -> None:
    result = pipe.run(LONDON, budget=300)
    assert "250 GBP" in result.context and result.passages[0].doc_id == "travel-hotels"
    assert result.tokens.prompt <= 300 and result.tokens.budget == 300
    assert result.prompt.endswith(f"Question: {LONDON}\nAnswer:")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "query is empty"),
        ("   \n\t ", "query is empty"),
        (None, "query must be a string, got NoneType"),
        (42, "query must be a string, got int"),
        (b"hotel", "query must be a string, got bytes"),
        (["hotel"], "query must be a string, got list"),
    ],
)
def test_bad_queries(pipe: Pipeline, query: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        pipe.run(query)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=message):
        pipe.trim(query, documents=DOCS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("corpus", "error", "message"),
    [
        ([], InputError, r"ingest: no documents given \(empty corpus\)"),
        (
            "not a list of documents",
            InputError,
            "document #0: expected a Document or a dict, got str",
        ),
        ([DOCS[0], {"text": "no id"}], InputError, "document #1: missing field 'id'"),
        ([{"id": "t"}], InputError, "document #0: missing field 'text'"),
        (
            [{"id": "", "text": "x"}],
            InputError,
            "document #0: field 'id' must be a non-empty string, got ''",
        ),
        (
            [{"id": 7, "text": "x"}],
            InputError,
            "document #0: field 'id' must be a non-empty string, got 7",
        ),
        (
            [{"id": "t", "text": None}],
            InputError,
            r"document #0 \(id='t'\): field 'text' must be a string, got NoneType",
        ),
        (
            [{"id": "t", "text": "x", "metadata": {1: "a"}}],
            InputError,
            "metadata keys must be strings, got 1",
        ),
        (
            [{"id": "t", "text": "x", "metadata": {"s": {1, 2}}}],
            InputError,
            "document 't': metadata s is a set",
        ),
        (
            [{"id": "d", "text": "a"}, {"id": "d", "text": "b"}],
            InputError,
            "duplicate document ids in one batch: 'd'",
        ),
    ],
)
def test_bad_corpora_change_nothing(pipe: Pipeline, corpus, error, message: str) -> None:
    before = state(pipe)
    with pytest.raises(error, match=message):
        pipe.ingest(corpus)
    assert state(pipe) == before


@pytest.mark.parametrize("metadata", ["oops", 5, [1, 2]])
def test_non_mapping_metadata_is_an_input_error(pipe: Pipeline, metadata: object) -> None:
    with pytest.raises(InputError, match="metadata"):
        pipe.ingest([{"id": "m", "text": "x", "metadata": metadata}])


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (0, "budget must be a positive number of tokens, got 0"),
        (-5, "budget must be a positive number of tokens, got -5"),
        (10, r"budget 10 is smaller than the prompt template plus the question \(\d+ tokens"),
    ],
)
def test_bad_budgets(pipe: Pipeline, budget: int, message: str) -> None:
    before = state(pipe)
    with pytest.raises(BudgetError, match=message):
        pipe.run(LONDON, budget=budget)
    assert state(pipe) == before


def test_the_smallest_budget_that_fits_the_template_is_never_exceeded(pipe: Pipeline) -> None:
    with pytest.raises(BudgetError, match=r"\((\d+) tokens") as info:
        pipe.run(LONDON, budget=1)
    fixed = int(info.value.args[0].split("(")[1].split()[0])
    result = pipe.run(LONDON, budget=fixed)
    assert result.tokens.prompt <= fixed and result.context == ""
    assert pipe.run(LONDON, budget=fixed + 40).tokens.prompt <= fixed + 40


@pytest.mark.parametrize("budget", ["300", 150.5])
def test_non_integer_budgets_are_budget_errors(pipe: Pipeline, budget: object) -> None:
    with pytest.raises(BudgetError, match="budget"):
        pipe.run(LONDON, budget=budget)  # type: ignore[arg-type]


def test_filters_on_fields_no_document_has(pipe: Pipeline) -> None:
    result = pipe.run(LONDON, filters={"tenant": "acme"})
    assert result.passages == [] and result.context == ""
    notes = result.report.stage("filter").notes
    assert "filter matched no chunks" in notes
    assert "filter field 'tenant' occurs in no document" in notes
    assert "retriever found no candidates" in result.report.stage("retriever").notes
    assert result.tokens.context == 0 and result.tokens.naive == 0


def test_malformed_filters_name_the_path(pipe: Pipeline) -> None:
    with pytest.raises(FilterError, match=r"filter \$or\[1\]\.updated\.\$gt: \$gt expects"):
        pipe.run(LONDON, filters={"$or": [{"product": "x"}, {"updated": {"$gt": [1]}}]})
    with pytest.raises(FilterError, match=r"filter product\.\$regex: unknown operator '\$regex'"):
        pipe.run(LONDON, filters={"product": {"$regex": "rel.*"}})
    with pytest.raises(FilterError, match="expected a filter mapping, got 'product'"):
        pipe.run(LONDON, filters="product")  # type: ignore[arg-type]


def test_a_10000_word_query(pipe: Pipeline) -> None:
    words = ("hotel cap London relay retention beacon alert upgrade broker " * 1_200).split()
    query = " ".join(words[:10_000])
    with pytest.raises(BudgetError, match="smaller than the prompt template plus the question"):
        pipe.run(query)
    result = pipe.run(query, budget=60_000)
    assert result.passages and result.tokens.prompt <= 60_000


def test_an_empty_index_gives_a_defined_empty_result(empty: Pipeline) -> None:
    result = empty.run(LONDON)
    assert result.passages == [] and result.context == ""
    assert "the index is empty: nothing to retrieve" in result.report.notes
    assert result.tokens.context == 0 and result.tokens.prompt > 0
    empty.ingest(DOCS[:1])
    empty.delete([DOCS[0]["id"]])
    again = empty.run(LONDON)
    assert again.passages == [] and "the index is empty: nothing to retrieve" in again.report.notes


def test_trim_rejects_mismatched_scores_and_survives_nan_scores(pipe: Pipeline) -> None:
    with pytest.raises(InputError, match="trim: 1 scores for 2 documents"):
        pipe.trim(LONDON, documents=DOCS[:2], scores=[0.5])
    result = pipe.trim(LONDON, documents=DOCS[:2], scores=[math.nan, 0.4], budget=400)
    assert result.tokens.prompt <= 400
    assert all(p.doc_id == "travel-hotels" for p in result.passages)


def test_every_error_is_a_ragtrim_error(pipe: Pipeline) -> None:
    for call in (lambda: pipe.run(""), lambda: pipe.run(LONDON, budget=0), lambda: pipe.ingest([])):
        with pytest.raises(RagtrimError):
            call()


def test_delete_with_a_bare_string_is_rejected(pipe: Pipeline) -> None:
    with pytest.raises(InputError, match="list of document ids"):
        pipe.delete("travel-hotels")  # type: ignore[arg-type]


def test_the_quick_start_import_works() -> None:
    assert ragtrim.Pipeline is Pipeline  # type: ignore[attr-defined]
