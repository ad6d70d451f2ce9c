"""The real data sets in ../shared/datasets load with the counts their SOURCE.md states, and
the metrics reach their ceiling when the context is the gold documents."""

from pathlib import Path

import pytest

from ragtrim.bench.datasets import Dataset, load_dataset
from ragtrim.bench.metrics import answer_recall, evidence_recall

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is not present")

# name: (documents, queries, queries with span answers, with gold sentences, qrels queries)
EXPECTED = {
    "covid-qa": (98, 1380, 1380, 0, None),
    # 727 gold sentences over 300 queries, every query has two gold paragraphs
    "hotpotqa-dev-300": (2975, 300, 300, 300, None),
    "pubmedqa-l": (1000, 1000, 0, 0, None),
    "scifact": (5183, 300, 0, 188, 300),
    # 2910 answerable; two of them have the answer "yes", a label
    "squad2-dev-half": (646, 6078, 2908, 0, None),
}


@pytest.fixture(scope="module")
def datasets() -> dict[str, Dataset]:
    return {name: load_dataset(SHARED / name) for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_dataset_counts(datasets, name):
    ds = datasets[name]
    counts = (
        len(ds.documents),
        len(ds.queries),
        sum(bool(q.span_answers) for q in ds.queries),
        sum(bool(q.gold_sentences) for q in ds.queries),
        None if ds.qrels is None else len(ds.qrels),
    )
    assert counts == EXPECTED[name]
    assert ds.stats == {}  # no tolerated irregularity in the converted sets


def test_shared_task_types(datasets):
    assert datasets["squad2-dev-half"].task_types() == {"factoid": 2910, "unanswerable": 3168}
    assert datasets["scifact"].task_types() == {"claim_verification": 300}
    assert datasets["hotpotqa-dev-300"].task_types() == {"bridge": 260, "comparison": 40}
    assert sum(len(judged) for judged in datasets["scifact"].qrels.values()) == 339
    train = load_dataset(SHARED / "scifact", split="train")
    assert (len(train.queries), sum(bool(q.gold_sentences) for q in train.queries)) == (809, 505)


def _gold_context(ds: Dataset, query) -> str:
    return "\n\n".join(ds.documents_by_id[d].text for d in query.gold_doc_ids)


def test_answer_recall_ceiling_on_squad(datasets):
    ds = datasets["squad2-dev-half"]
    values = [answer_recall(_gold_context(ds, q), q.answers) for q in ds.queries]
    defined = [v for v in values if v is not None]
    assert (len(defined), sum(defined)) == (2908, 2908)


def test_answer_recall_ceiling_on_covid_qa(datasets):
    ds = datasets["covid-qa"]
    values = [answer_recall(_gold_context(ds, q), q.answers) for q in ds.queries]
    missed = [q.answers for q, v in zip(ds.queries, values, strict=True) if v == 0.0]
    assert missed == [("sed",)]  # an annotation cut from "caused"


def test_evidence_recall_ceiling_on_scifact(datasets):
    ds = datasets["scifact"]
    results = [
        evidence_recall(_gold_context(ds, q), q.gold_sentences)
        for q in ds.queries
        if q.gold_sentences
    ]
    assert len(results) == 188 and all(r == (1.0, True) for r in results)


def test_answer_and_evidence_recall_ceiling_on_hotpotqa(datasets):
    ds = datasets["hotpotqa-dev-300"]
    assert sum(len(q.gold_sentences) for q in ds.queries) == 727
    assert all(len(q.gold_doc_ids) == 2 for q in ds.queries)
    context = {q.id: _gold_context(ds, q) for q in ds.queries}
    assert all(answer_recall(context[q.id], q.answers) == 1.0 for q in ds.queries)
    evidence = [evidence_recall(context[q.id], q.gold_sentences) for q in ds.queries]
    assert all(e == (1.0, True) for e in evidence)
    # the two gold paragraphs' sentences, but not their whole texts: one gold sentence cut by
    # an ellipsis no longer counts
    first = ds.queries[0]
    cut = first.gold_sentences[0].strip()
    half = len(cut) // 2
    broken = context[first.id].replace(cut, f"{cut[:half]} … {cut[half:]}")
    share, complete = evidence_recall(broken, first.gold_sentences)
    assert share == (len(first.gold_sentences) - 1) / len(first.gold_sentences) and not complete
