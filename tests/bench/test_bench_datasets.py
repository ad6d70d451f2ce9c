import json
import re
import shutil
from pathlib import Path

import pytest

from ragtrim.bench.datasets import Dataset, Query, iter_datasets, load_dataset
from ragtrim.errors import InputError
from ragtrim.types import Document

DATA = Path(__file__).parent / "data"


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(DATA / name, target)
    return target


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- ragtrim JSONL -------------------------------------------------------------------------


def test_ragtrim_layout_round_trip():
    ds = load_dataset(DATA / "ragtrim_tiny")
    assert (ds.name, ds.layout, ds.split) == ("ragtrim_tiny", "ragtrim", "test")
    assert [d.id for d in ds.documents] == ["d1", "d2", "d3"]  # the blank line is skipped
    assert ds.documents[0].metadata == {"lang": "en", "year": 2020, "title": "Kestrel"}
    assert ds.documents[0].title == "Kestrel"
    assert ds.documents_by_id["d3"].title == ""
    q1, q2, q3, q4 = ds.queries
    assert q1 == Query(
        id="q1",
        question="How fast does the peregrine falcon dive?",
        answers=("over 300 km/h",),
        task_type="factoid",
        gold_doc_ids=("d2",),
        gold_sentences=("The peregrine falcon dives at over 300 km/h.",),
        metadata={"filters": {"lang": "en"}},
    )
    assert q1.filters == {"lang": "en"} and q4.filters is None
    assert q1.span_answers == ("over 300 km/h",)
    assert q2.span_answers == ()  # "yes" is a label
    assert q3.answers == () and q3.span_answers == ()
    assert ds.task_types() == {"factoid": 2, "unanswerable": 1, "yes_no": 1}
    # qrels_demo_test.tsv sits beside the files and names the test split
    assert ds.qrels == {"q1": {"d2": 1}, "q4": {"d1": 2, "d3": 0}}
    assert ds.stats == {}
    assert re.fullmatch(r"[0-9a-f]{16}", ds.fingerprint)
    hash(q1)  # metadata is left out of the hash, so queries can go in sets


def test_ragtrim_other_split_and_missing_split():
    train = load_dataset(DATA / "ragtrim_tiny", split="train")
    assert [q.id for q in train.queries] == ["t1"]
    assert train.queries[0].task_type == "factoid"
    assert train.qrels is None  # the only qrels file is for the test split
    with pytest.raises(InputError, match=r"split 'dev'.*queries_dev\.jsonl.*queries\.jsonl"):
        load_dataset(DATA / "ragtrim_tiny", split="dev")


def test_fingerprint_follows_content_not_location(tmp_path):
    original = load_dataset(DATA / "ragtrim_tiny").fingerprint
    moved = _copy("ragtrim_tiny", tmp_path)
    assert load_dataset(moved).fingerprint == original
    corpus = moved / "corpus.jsonl"
    corpus.write_bytes(corpus.read_bytes().replace(b"bird of prey", b"bird of pray"))
    assert load_dataset(moved).fingerprint != original


def test_malformed_corpus_lines_are_all_reported_with_file_and_line(tmp_path):
    folder = _copy("ragtrim_tiny", tmp_path)
    corpus = _write_lines(
        folder / "corpus.jsonl",
        [
            '{"id": "d1", "text": "ok"}',
            '{"id": "d2", "text": "broken"',
            '{"id": "d3"}',
            '{"id": 4, "text": "numeric id"}',
            '["not", "an", "object"]',
            '{"id": "d1", "text": "again"}',
            '{"id": "d7", "text": "x", "metadata": [1]}',
            '{"id": "d8", "text": 8}',
        ],
    )
    with pytest.raises(InputError) as info:
        load_dataset(folder)
    message = str(info.value)
    assert message.startswith(f"7 invalid record(s) in {corpus}:")
    assert f"{corpus}:2: invalid JSON" in message
    assert f"{corpus}:3: missing field 'text'" in message
    assert f"{corpus}:4: field 'id' must be a non-empty string, got 4" in message
    assert f"{corpus}:5: expected a JSON object, got list" in message
    assert f"{corpus}:6: duplicate document id 'd1' (first at {corpus}:1)" in message
    assert "... and 2 more" in message  # only the first five are shown
    assert f"{corpus}:7" not in message


def test_query_line_missing_question(tmp_path):
    folder = _copy("ragtrim_tiny", tmp_path)
    queries = _write_lines(
        folder / "queries.jsonl",
        [
            '{"id": "q1", "question": "fine?", "answers": ["x"]}',
            '{"id": "q2", "answers": ["x"]}',
            '{"id": "q3", "question": "bad answers", "answers": "x"}',
            '{"id": "q4", "question": "bad gold", "gold_doc_ids": ["d1", "nope"]}',
        ],
    )
    with pytest.raises(InputError) as info:
        load_dataset(folder)
    message = str(info.value)
    assert f"{queries}:2: missing field 'question'" in message
    assert f"{queries}:3: field 'answers' must be a list of strings" in message
    assert f"{queries}:4: gold_doc_ids not in the corpus: ['nope']" in message


def test_default_task_type_and_no_usable_queries(tmp_path):
    folder = _copy("ragtrim_tiny", tmp_path)
    _write_lines(folder / "queries.jsonl", ['{"id": "q1", "question": "Which bird?"}'])
    assert load_dataset(folder).queries[0].task_type == "default"
    (folder / "queries.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match=f"{re.escape(str(folder))}: no usable queries"):
        load_dataset(folder)


def test_title_conflicting_with_metadata_title_is_an_error(tmp_path):
    folder = _copy("ragtrim_tiny", tmp_path)
    corpus = _write_lines(
        folder / "corpus.jsonl",
        ['{"id": "d1", "title": "A", "text": "t", "metadata": {"title": "B"}}'],
    )
    with pytest.raises(InputError, match=f"{re.escape(str(corpus))}:1: title 'A' differs"):
        load_dataset(folder)


def test_bad_qrels_line_is_reported(tmp_path):
    folder = _copy("ragtrim_tiny", tmp_path)
    qrels = folder / "qrels_demo_test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td2\thigh\nq1\td2\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_dataset(folder)
    assert f"{qrels}:2: relevance must be an integer, got 'high'" in str(info.value)
    assert f"{qrels}:3: expected 3 (BEIR) or 4 (TREC) columns, got 2" in str(info.value)


def test_trec_qrels_and_unknown_queries_are_counted(tmp_path):
    folder = _copy("ragtrim_tiny", tmp_path)
    (folder / "qrels_demo_test.tsv").unlink()
    (folder / "qrels.tsv").write_text("q1 0 d2 1\nq9 0 d1 1\nq4 0 gone 1\n", encoding="utf-8")
    ds = load_dataset(folder)
    assert ds.qrels == {"q1": {"d2": 1}, "q4": {"gone": 1}}
    assert ds.stats == {"qrels_docs_not_in_corpus": 1, "qrels_queries_not_loaded": 1}


# --- BEIR ----------------------------------------------------------------------------------


def test_beir_layout():
    ds = load_dataset(DATA / "beir_tiny")
    assert ds.layout == "beir"
    assert [d.id for d in ds.documents] == ["101", "102", "103"]  # integer _id becomes "103"
    assert ds.documents[0].metadata == {"source": "pubmed", "title": "Aspirin"}
    # query 4 is judged only in train, so the test split leaves it out
    assert [q.id for q in ds.queries] == ["1", "2", "3"]
    q1, q2, q3 = ds.queries
    assert (q1.question, q1.task_type, q1.answers) == ("aspirin heart attack", "retrieval", ())
    assert q2.gold_doc_ids == ("102",)  # 101 is judged 0: not gold
    assert q2.metadata == {"topic": "cardio"}
    assert q3.gold_doc_ids == ("103", "999")
    assert ds.qrels == {"1": {"101": 1}, "2": {"102": 2, "101": 0}, "3": {"103": 1, "999": 1}}
    assert ds.stats == {"qrels_docs_not_in_corpus": 1}  # 999; kept, as BEIR keeps it
    train = load_dataset(DATA / "beir_tiny", split="train")
    assert [q.id for q in train.queries] == ["4"]
    assert train.fingerprint != ds.fingerprint
    with pytest.raises(InputError, match=r"split 'dev'.*splits: \['test', 'train'\]"):
        load_dataset(DATA / "beir_tiny", split="dev")


# --- SQuAD ---------------------------------------------------------------------------------


def test_squad_v2():
    ds = load_dataset(DATA / "squad_v2_tiny.json")
    assert (ds.name, ds.layout) == ("squad_v2_tiny", "squad")
    assert [d.id for d in ds.documents] == ["Super_Bowl_50#0", "Super_Bowl_50#1", "Oxygen#0"]
    assert ds.documents[0].metadata == {"title": "Super Bowl 50", "article": "Super_Bowl_50"}
    s1, s2, s3, s4 = ds.queries
    assert s1.answers == ("The Denver Broncos", "Denver Broncos")  # unique texts, in order
    assert (s1.task_type, s1.gold_doc_ids, s1.gold_sentences) == (
        "factoid",
        ("Super_Bowl_50#0",),
        (),
    )
    text = ds.documents[0].text
    for answer_text, start in zip(
        ["The Denver Broncos", "Denver Broncos", "Denver Broncos"],
        s1.metadata["answer_starts"],
        strict=True,
    ):
        assert text[start : start + len(answer_text)] == answer_text
    assert (s2.answers, s2.task_type, s2.gold_doc_ids) == ((), "unanswerable", ())
    assert s2.metadata["context_doc_id"] == "Super_Bowl_50#0"
    assert s2.metadata["plausible_answers"] == ["Denver Broncos"]
    assert s3.gold_doc_ids == ("Super_Bowl_50#1",)
    assert s4.answers == ("8",)
    assert ds.task_types() == {"factoid": 3, "unanswerable": 1}


def test_squad_v1():
    ds = load_dataset(DATA / "squad_v1_tiny.json")
    assert [q.task_type for q in ds.queries] == ["factoid", "factoid"]
    assert ds.queries[1].answers == ("a chemical element", "chemical element")


def test_squad_errors_name_the_location(tmp_path):
    data = json.loads((DATA / "squad_v1_tiny.json").read_text())
    del data["data"][0]["paragraphs"][0]["qas"][1]["answers"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"bad\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]: no"):
        load_dataset(path)
    path.write_text('{"data": [')
    with pytest.raises(InputError, match=r"bad\.json:1: invalid JSON"):
        load_dataset(path)


# --- HotpotQA ------------------------------------------------------------------------------


def _hotpot_view(ds: Dataset) -> tuple:
    return ds.documents, ds.queries, ds.stats, ds.task_types()


def test_hotpot_official_format():
    ds = load_dataset(DATA / "hotpot_official_tiny.json")
    assert ds.layout == "hotpotqa"
    assert [d.id for d in ds.documents] == ["Arthur's Magazine", "First for Women", "Philadelphia"]
    arthur = ds.documents[0]
    assert arthur.text == (
        "Arthur's Magazine (1844-1846) was an American literary periodical."
        " It was published in Philadelphia."
    )
    assert arthur.metadata["title"] == "Arthur's Magazine"
    # h3 repeats "First for Women" with another text: the first is kept
    assert ds.documents[1].text.startswith("First for Women is a woman's magazine")
    h1, h2, h3 = ds.queries
    assert (h1.answers, h1.task_type) == (("Arthur's Magazine",), "comparison")
    assert h1.gold_doc_ids == ("Arthur's Magazine", "First for Women")
    assert h2.gold_doc_ids == ("Arthur's Magazine", "Philadelphia")
    assert h2.gold_sentences == (  # stripped, in supporting-fact order; index 7 does not exist
        "It was published in Philadelphia.",
        "Arthur's Magazine (1844-1846) was an American literary periodical.",
    )
    assert h2.metadata == {"type": "bridge", "level": "hard"}
    assert h3.span_answers == ()  # "yes"
    assert ds.stats == {
        "conflicting_titles": 1,
        "gold_sentences_not_in_gold_docs": 1,  # h3's sentence is only in the dropped text
        "supporting_facts_missing": 1,
    }
    assert ds.task_types() == {"bridge": 1, "comparison": 2}


def test_hotpot_hugging_face_formats_give_the_same_data(tmp_path):
    official = load_dataset(DATA / "hotpot_official_tiny.json")
    hf_lines = load_dataset(DATA / "hotpot_hf_tiny.jsonl")
    assert _hotpot_view(hf_lines) == _hotpot_view(official)
    records = [
        json.loads(line) for line in (DATA / "hotpot_hf_tiny.jsonl").read_text().split("\n") if line
    ]
    as_list = tmp_path / "hotpot_hf.json"
    as_list.write_text(json.dumps(records))
    assert _hotpot_view(load_dataset(as_list)) == _hotpot_view(official)


def test_hotpot_bad_record(tmp_path):
    records = json.loads((DATA / "hotpot_official_tiny.json").read_text())
    del records[1]["answer"]
    records[2]["supporting_facts"] = [["First for Women", "zero"]]
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps(records))
    with pytest.raises(InputError) as info:
        load_dataset(path)
    assert "hotpot.json: record 1: missing field 'answer'" in str(info.value)
    assert "hotpot.json: record 2: supporting_facts must be (title, sentence index)" in str(
        info.value
    )


# --- detection and iteration ---------------------------------------------------------------


def test_unknown_layouts(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"unknown data-set layout, found \['notes.txt'\]; "):
        load_dataset(tmp_path)
    with pytest.raises(InputError, match="a BEIR folder .corpus.jsonl . queries.jsonl"):
        load_dataset(tmp_path / "notes.txt")
    other = tmp_path / "other.json"
    other.write_text('{"rows": []}')
    with pytest.raises(InputError, match="unknown data-set layout"):
        load_dataset(other)
    with pytest.raises(InputError, match="no such file or folder"):
        load_dataset(tmp_path / "missing")


def test_iter_datasets(tmp_path):
    _copy("ragtrim_tiny", tmp_path)
    _copy("beir_tiny", tmp_path)
    (tmp_path / ".cache").mkdir()
    (tmp_path / "README.md").write_text("not a folder")
    assert [ds.name for ds in iter_datasets(tmp_path)] == ["beir_tiny", "ragtrim_tiny"]


# --- subsets -------------------------------------------------------------------------------


def _synthetic(sizes: dict[str, int]) -> Dataset:
    queries = [
        Query(id=f"{task}-{i}", question=f"question {i}?", task_type=task)
        for task, count in sizes.items()
        for i in range(count)
    ]
    qrels = {q.id: {"d": 1} for q in queries}
    docs = [Document(id="d", text="text")]
    return Dataset("synthetic", Path("."), docs, queries, qrels, "0123456789abcdef")


def test_subset_is_stratified_seeded_and_ordered():
    ds = _synthetic({"factoid": 60, "yes_no": 30, "unanswerable": 10})
    sub = ds.subset(10, seed=1)
    assert sub.task_types() == {"factoid": 6, "unanswerable": 1, "yes_no": 3}
    positions = [ds.queries.index(q) for q in sub.queries]
    assert positions == sorted(positions)
    assert [q.id for q in ds.subset(10, seed=1).queries] == [q.id for q in sub.queries]
    assert [q.id for q in ds.subset(10, seed=2).queries] != [q.id for q in sub.queries]
    assert set(sub.qrels) == {q.id for q in sub.queries}
    assert sub.documents == ds.documents
    assert sub.fingerprint != ds.fingerprint
    assert len(ds.queries) == 100  # the original is untouched


def test_subset_largest_remainder_and_whole_set():
    # quotas 5 * (5, 3, 2) / 10 = 2.5, 1.5, 1.0 -> floors 2, 1, 1; the leftover slot goes to
    # the tie on .5 broken by the larger task type ("a")
    ds = _synthetic({"a": 5, "b": 3, "c": 2})
    assert ds.subset(5, seed=0).task_types() == {"a": 3, "b": 1, "c": 1}
    whole = ds.subset(50)
    assert whole.queries == ds.queries and whole.fingerprint == ds.fingerprint
    with pytest.raises(InputError, match="positive integer"):
        ds.subset(0)


def test_answerable_keeps_span_answer_queries_only():
    queries = [
        Query(id="span", question="q?", answers=("Paris",)),
        Query(id="none", question="q?", task_type="unanswerable"),
        Query(id="label", question="q?", answers=("yes",)),
    ]
    ds = Dataset("mixed", Path("."), [Document(id="d", text="t")], queries, None, "0" * 16)
    kept = ds.answerable()
    assert [q.id for q in kept.queries] == ["span"]
    assert kept.fingerprint != ds.fingerprint
    assert len(ds.queries) == 3
    only_span = Dataset("s", Path("."), ds.documents, queries[:1], None, "1" * 16)
    assert only_span.answerable() is only_span
    with pytest.raises(InputError, match="no query has a span answer"):
        Dataset("l", Path("x"), ds.documents, queries[1:], None, "2" * 16).answerable()
