"""The bundled corpus is only useful if its labels are right: check every one of them."""

import json
from collections import Counter
from pathlib import Path

import pytest

from ragtrim.bench.metrics import word_form
from ragtrim.filtering import parse_filter
from ragtrim.tokens import get_counter

ROOT = Path(__file__).resolve().parents[2] / "corpora" / "kestrel"
TASK_TYPES = {
    "lookup",
    "procedure",
    "multi_hop",
    "comparison",
    "policy_current",
    "summary",
    "unanswerable",
}
METADATA = {"department", "doc_type", "product", "audience", "updated"}


def _jsonl(name):
    return [
        json.loads(line)
        for line in (ROOT / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


DOCS = {d["id"]: d for d in _jsonl("corpus.jsonl")}
QUERIES = _jsonl("queries.jsonl")


def test_documents_shape_and_metadata():
    assert 40 <= len(DOCS) <= 60
    counter = get_counter()
    tokens = {doc_id: counter.count(d["text"]) for doc_id, d in DOCS.items()}
    assert sum(t > 3000 for t in tokens.values()) >= 5
    assert sum(t < 250 for t in tokens.values()) >= 3
    for doc in DOCS.values():
        assert set(doc["metadata"]) >= METADATA, doc["id"]
        assert doc["title"] and doc["text"].strip()
    types = Counter(d["metadata"]["doc_type"] for d in DOCS.values())
    assert {
        "manual",
        "api_reference",
        "policy",
        "faq",
        "release_notes",
        "runbook",
        "meeting_notes",
    } <= set(types)


def test_superseded_and_current_policy_versions_exist():
    by_title: dict[str, list[str]] = {}
    for doc in DOCS.values():
        by_title.setdefault(doc["title"].rstrip("0123456789 ()"), []).append(
            doc["metadata"]["updated"]
        )
    assert any(len(set(dates)) > 1 for dates in by_title.values())


def test_query_set_is_valid():
    assert len(QUERIES) >= 150
    assert len({q["id"] for q in QUERIES}) == len(QUERIES)
    assert set(Counter(q["task_type"] for q in QUERIES)) == TASK_TYPES
    for q in QUERIES:
        gold_texts = [DOCS[d]["text"] for d in q["gold_doc_ids"]]  # KeyError = unknown gold id
        if q["task_type"] == "unanswerable":
            assert q["answers"] == [] and q["gold_sentences"] == [], q["id"]
            continue
        assert q["answers"], q["id"]
        for answer in q["answers"]:
            assert any(answer in text for text in gold_texts), (q["id"], answer)
        for sentence in q["gold_sentences"]:
            assert any(sentence in text for text in gold_texts), (q["id"], sentence)
        if q["task_type"] == "multi_hop":
            assert len(set(q["gold_doc_ids"])) >= 2, q["id"]


@pytest.mark.parametrize(
    "query", [q for q in QUERIES if q["metadata"].get("filters")], ids=lambda q: q["id"]
)
def test_query_filters_are_valid_and_keep_their_gold_documents(query):
    flt = parse_filter(query["metadata"]["filters"])
    for doc_id in query["gold_doc_ids"]:
        assert flt.matches(DOCS[doc_id]["metadata"]), (query["id"], doc_id)


def test_every_policy_current_query_carries_a_filter():
    for q in QUERIES:
        if q["task_type"] == "policy_current":
            assert q["metadata"].get("filters"), q["id"]


def test_paraphrases_refer_to_real_queries():
    ids = {q["id"] for q in QUERIES}
    rows = _jsonl("paraphrases.jsonl")
    assert all(r["query_id"] in ids and r["text"].strip() for r in rows)
    counts = Counter(r["same_intent"] for r in rows)
    assert counts[True] >= 40 and counts[False] >= 40


def test_no_question_asks_what_a_near_miss_asks():
    """The semantic-cache benchmark counts a near-miss that hits another question as a false
    hit, so no question may be a near-miss's own wording."""
    questions = {word_form(q["question"]) for q in QUERIES}
    near_misses = [r["text"] for r in _jsonl("paraphrases.jsonl") if not r["same_intent"]]
    assert [t for t in near_misses if word_form(t) in questions] == []
