"""Load benchmark data sets into one shape, whatever layout they ship in.

Four layouts are recognised by :func:`load_dataset`:

- ragtrim JSONL folder: ``corpus.jsonl`` + ``queries.jsonl`` (``queries_<split>.jsonl`` for
  other splits), optional ``qrels*.tsv`` beside them (see ``../shared/README.md``);
- BEIR folder: ``corpus.jsonl`` (``_id``) + ``queries.jsonl`` (``_id``, ``text``) +
  ``qrels/<split>.tsv``;
- a SQuAD v1.1 / v2.0 ``.json`` file;
- a HotpotQA ``.json`` file (official list format or a Hugging Face export), or ``.jsonl``.

Loading is strict because benchmark numbers are only as good as their data: every malformed
line is reported as ``<file>:<line>: <problem>`` (all of them are collected, the error shows
the first five and the count), duplicate ids and gold ids missing from the corpus are errors,
and the data irregularities that real data sets do have (a HotpotQA title with two texts, qrels
naming documents absent from a BEIR corpus) are counted in ``Dataset.stats`` and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from ragtrim.bench.metrics import span_answers
from ragtrim.errors import InputError
from ragtrim.types import Document

logger = logging.getLogger(__name__)

DEFAULT_TASK_TYPE = "default"
"""task_type of a ragtrim-JSONL query that does not state one."""

_SHOWN_PROBLEMS = 5


@dataclass(frozen=True)
class Query:
    """One benchmark question with everything needed to score the context built for it.

    ``answers`` may be empty (unanswerable) or class labels (yes/no, SUPPORT, ...);
    ``span_answers`` keeps only those that can be looked for in a text.
    """

    id: str
    question: str
    answers: tuple[str, ...] = ()
    task_type: str = DEFAULT_TASK_TYPE
    gold_doc_ids: tuple[str, ...] = ()
    gold_sentences: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def span_answers(self) -> tuple[str, ...]:
        """Answers that are spans, see :func:`ragtrim.bench.metrics.span_answers` for the rule:
        empty when every answer is a label such as "yes" or "NOT_ENOUGH_INFO"."""
        return span_answers(self.answers)

    @property
    def filters(self) -> Any:
        """The metadata filter this query runs with (``metadata["filters"]``), if any."""
        return self.metadata.get("filters")


@dataclass
class Dataset:
    """Documents, queries and (for retrieval sets) graded qrels, plus a content fingerprint.

    ``fingerprint`` is the first 16 hex digits of a sha256 over the bytes of every file read,
    so caches and result files can tell two versions of a data set apart. ``stats`` counts the
    data irregularities that were tolerated (see the module docstring).
    """

    name: str
    path: Path
    documents: list[Document]
    queries: list[Query]
    qrels: dict[str, dict[str, int]] | None
    fingerprint: str
    layout: str = ""
    split: str = "test"
    stats: dict[str, int] = field(default_factory=dict)

    def task_types(self) -> dict[str, int]:
        """Number of queries per task type, sorted by task type."""
        return dict(sorted(Counter(q.task_type for q in self.queries).items()))

    @cached_property
    def documents_by_id(self) -> dict[str, Document]:
        return {d.id: d for d in self.documents}

    def answerable(self) -> Dataset:
        """Only the queries with a span answer (SQuAD 2.0's unanswerable half and label-only
        queries removed): answer recall is defined on these, so token means should be too."""
        queries = [q for q in self.queries if q.span_answers]
        if not queries:
            raise InputError(
                f"{self.path}: no query has a span answer (answers are all labels or empty)"
            )
        if len(queries) == len(self.queries):
            return self
        return self._with_queries(
            queries, hashlib.sha256(f"{self.fingerprint}|answerable".encode())
        )

    def subset(self, limit: int, seed: int = 0) -> Dataset:
        """At most ``limit`` queries, sampled per task type in proportion to its size.

        Each task type gets ``floor(limit * share)`` queries and the leftover slots go to the
        largest fractional parts (ties: larger task type, then name), so the mix of task types
        is kept. Queries keep their original order; documents are all kept (the corpus is what
        retrieval searches). The fingerprint changes unless every query is kept.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InputError(f"subset limit must be a positive integer, got {limit!r}")
        if limit >= len(self.queries):
            return replace(self, documents=list(self.documents), queries=list(self.queries))
        rng = random.Random(seed)
        strata: dict[str, list[int]] = {}
        for position, query in enumerate(self.queries):
            strata.setdefault(query.task_type, []).append(position)
        quotas = _proportional_quotas({t: len(p) for t, p in strata.items()}, limit)
        chosen: list[int] = []
        for task_type in sorted(strata):
            chosen.extend(rng.sample(strata[task_type], quotas[task_type]))
        chosen.sort()
        queries = [self.queries[i] for i in chosen]
        digest = hashlib.sha256(f"{self.fingerprint}|subset|".encode())
        digest.update("\n".join(q.id for q in queries).encode("utf-8", "surrogatepass"))
        return self._with_queries(queries, digest)

    def _with_queries(self, queries: list[Query], digest: Any) -> Dataset:
        """A copy with only ``queries`` (and their qrels), fingerprinted by ``digest``."""
        qrels = None
        if self.qrels is not None:
            qrels = {q.id: self.qrels[q.id] for q in queries if q.id in self.qrels}
        return replace(
            self,
            documents=list(self.documents),
            queries=queries,
            qrels=qrels,
            fingerprint=digest.hexdigest()[:16],
        )


def _proportional_quotas(sizes: Mapping[str, int], limit: int) -> dict[str, int]:
    total = sum(sizes.values())
    exact = {name: limit * size / total for name, size in sizes.items()}
    quotas = {name: math.floor(value) for name, value in exact.items()}
    leftover = limit - sum(quotas.values())
    by_remainder = sorted(sizes, key=lambda n: (-(exact[n] - quotas[n]), -sizes[n], n))
    for name in by_remainder[:leftover]:
        quotas[name] += 1
    return quotas


# --- reading -------------------------------------------------------------------------------


class _Problems:
    """Collects ``<file>:<line>: <problem>`` messages so one run reports every bad line."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.messages.append(f"{where}: {problem}")

    def raise_if_any(self, what: str) -> None:
        if not self.messages:
            return
        count = len(self.messages)
        shown = "\n  ".join(self.messages[:_SHOWN_PROBLEMS])
        more = f"\n  ... and {count - _SHOWN_PROBLEMS} more" if count > _SHOWN_PROBLEMS else ""
        raise InputError(f"{count} invalid record(s) in {what}:\n  {shown}{more}")


class _Fingerprint:
    """sha256 over (file name, file sha256) pairs in read order: renaming the folder keeps it."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, name: str, file_digest: str) -> None:
        self._digest.update(f"{name}\0{file_digest}\n".encode())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:16]


class _Bad(Exception):
    """A record-level problem; the reader adds the file and line."""


def _jsonl_records(
    path: Path, fingerprint: _Fingerprint, problems: _Problems
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Stream ``(where, record)`` pairs, hashing the bytes as they are read (one pass)."""
    file_digest = hashlib.sha256()
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            file_digest.update(raw)
            if not raw.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.add(where, f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            except UnicodeDecodeError as exc:
                problems.add(where, f"not UTF-8 ({exc.reason})")
                continue
            if not isinstance(record, dict):
                problems.add(where, f"expected a JSON object, got {type(record).__name__}")
                continue
            yield where, record
    fingerprint.add(path.name, file_digest.hexdigest())


def _read_json(path: Path, fingerprint: _Fingerprint) -> Any:
    data = path.read_bytes()
    fingerprint.add(path.name, hashlib.sha256(data).hexdigest())
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 ({exc.reason})") from None


# --- field validation ----------------------------------------------------------------------


def _text(record: Mapping[str, Any], key: str, *, default: str | None = None) -> str:
    if key not in record:
        if default is None:
            raise _Bad(f"missing field {key!r}")
        return default
    value = record[key]
    if not isinstance(value, str):
        raise _Bad(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def _identifier(record: Mapping[str, Any], key: str, *, allow_int: bool = False) -> str:
    if key not in record:
        raise _Bad(f"missing field {key!r}")
    value = record[key]
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise _Bad(f"field {key!r} must be a non-empty string, got {value!r}")
    return value


def _strings(record: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"field {key!r} must be a list of strings, got {value!r:.80}")
    return tuple(value)


def _mapping(record: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"field {key!r} must be an object, got {type(value).__name__}")
    return dict(value)


def _document(doc_id: str, text: str, title: str, metadata: dict[str, Any]) -> Document:
    if title and metadata.get("title", title) != title:
        raise _Bad(f"title {title!r} differs from metadata.title {metadata['title']!r}")
    if title or "title" not in metadata:
        metadata["title"] = title
    try:
        return Document(id=doc_id, text=text, metadata=metadata)
    except ValueError as exc:
        raise _Bad(str(exc).splitlines()[0]) from None


class _UniqueIds:
    """Reports a repeated id with the place it was first seen."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.first_seen: dict[str, str] = {}

    def check(self, identifier: str, where: str) -> None:
        first = self.first_seen.setdefault(identifier, where)
        if first != where:
            raise _Bad(f"duplicate {self.kind} id {identifier!r} (first at {first})")


# --- layout: ragtrim JSONL -----------------------------------------------------------------


def _load_corpus_jsonl(
    path: Path, fingerprint: _Fingerprint, *, beir: bool
) -> tuple[list[Document], dict[str, str]]:
    """Documents and, per id, where each was defined (for messages)."""
    problems = _Problems()
    documents: list[Document] = []
    ids = _UniqueIds("document")
    for where, record in _jsonl_records(path, fingerprint, problems):
        try:
            doc_id = _identifier(record, "_id" if beir else "id", allow_int=beir)
            ids.check(doc_id, where)
            documents.append(
                _document(
                    doc_id,
                    _text(record, "text"),
                    _text(record, "title", default=""),
                    _mapping(record, "metadata"),
                )
            )
        except _Bad as exc:
            problems.add(where, str(exc))
    problems.raise_if_any(str(path))
    return documents, ids.first_seen


def _ragtrim_query(record: Mapping[str, Any]) -> Query:
    task_type = _text(record, "task_type", default=DEFAULT_TASK_TYPE)
    question = _text(record, "question")
    if not question.strip():
        raise _Bad("field 'question' is empty")
    if not task_type:
        raise _Bad("field 'task_type' is empty")
    return Query(
        id=_identifier(record, "id"),
        question=question,
        answers=_strings(record, "answers"),
        task_type=task_type,
        gold_doc_ids=_strings(record, "gold_doc_ids"),
        gold_sentences=_strings(record, "gold_sentences"),
        metadata=_mapping(record, "metadata"),
    )


def _split_file(folder: Path, stem: str, split: str) -> Path:
    """``<stem>_<split>.jsonl`` if present, else ``<stem>.jsonl`` for the default test split."""
    specific = folder / f"{stem}_{split}.jsonl"
    if specific.is_file():
        return specific
    plain = folder / f"{stem}.jsonl"
    if split == "test" and plain.is_file():
        return plain
    available = sorted(p.name for p in folder.glob(f"{stem}*.jsonl"))
    raise InputError(
        f"{folder}: no {stem} file for split {split!r}: expected {specific.name}"
        + (f" or {plain.name}" if split == "test" else "")
        + f"; found {available or 'none'}"
    )


def _qrels_beside(folder: Path, split: str) -> Path | None:
    """The ``qrels*.tsv`` whose name mentions the split (``qrels_beir_test.tsv``), or
    ``qrels.tsv`` for the test split; ``None`` when there is none."""
    candidates = sorted(folder.glob("qrels*.tsv"))
    matching = [p for p in candidates if split in re.split(r"[_.\-]", p.name)]
    if len(matching) > 1:
        names = [p.name for p in matching]
        raise InputError(f"{folder}: several qrels files for split {split!r}: {names}")
    if matching:
        return matching[0]
    plain = folder / "qrels.tsv"
    return plain if split == "test" and plain.is_file() else None


def _load_ragtrim(folder: Path, split: str) -> Dataset:
    fingerprint = _Fingerprint()
    documents, doc_sites = _load_corpus_jsonl(folder / "corpus.jsonl", fingerprint, beir=False)
    texts = {d.id: d.text for d in documents}
    queries_path = _split_file(folder, "queries", split)
    problems = _Problems()
    queries: list[Query] = []
    ids = _UniqueIds("query")
    stats: Counter[str] = Counter()
    for where, record in _jsonl_records(queries_path, fingerprint, problems):
        try:
            query = _ragtrim_query(record)
            ids.check(query.id, where)
            missing = [d for d in query.gold_doc_ids if d not in doc_sites]
            if missing:
                raise _Bad(f"gold_doc_ids not in the corpus: {missing[:5]}")
        except _Bad as exc:
            problems.add(where, str(exc))
            continue
        gold_texts = [texts[d] for d in query.gold_doc_ids]
        stats["gold_sentences_not_in_gold_docs"] += sum(
            not _occurs_in_any(s, gold_texts) for s in query.gold_sentences
        )
        queries.append(query)
    problems.raise_if_any(str(queries_path))
    qrels_path = _qrels_beside(folder, split)
    qrels = None
    if qrels_path is not None:
        qrels = _restrict_qrels(
            _read_qrels(qrels_path, fingerprint), {q.id for q in queries}, doc_sites, stats
        )
    return _finish(folder, "ragtrim", split, documents, queries, qrels, fingerprint, stats)


def _occurs_in_any(sentence: str, texts: list[str]) -> bool:
    if any(sentence in t for t in texts):
        return True
    squashed = " ".join(sentence.split())
    return any(squashed in " ".join(t.split()) for t in texts)


# --- qrels ---------------------------------------------------------------------------------


def _read_qrels(path: Path, fingerprint: _Fingerprint) -> dict[str, dict[str, int]]:
    """BEIR ``query-id corpus-id score`` (header optional) or TREC ``qid 0 docid rel`` rows."""
    problems = _Problems()
    qrels: dict[str, dict[str, int]] = {}
    file_digest = hashlib.sha256()
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            file_digest.update(raw)
            where = f"{path}:{line_number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.add(where, f"not UTF-8 ({exc.reason})")
                continue
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (3, 4):
                problems.add(where, f"expected 3 (BEIR) or 4 (TREC) columns, got {len(fields)}")
                continue
            query_id, doc_id, grade = fields[0], fields[-2], fields[-1]
            try:
                score = int(grade)
            except ValueError:
                if line_number == 1:  # the BEIR header "query-id corpus-id score"
                    continue
                problems.add(where, f"relevance must be an integer, got {grade!r}")
                continue
            judged = qrels.setdefault(query_id, {})
            if judged.setdefault(doc_id, score) != score:
                problems.add(
                    where, f"({query_id}, {doc_id}) judged twice: {judged[doc_id]} and {score}"
                )
    fingerprint.add(path.name, file_digest.hexdigest())
    problems.raise_if_any(str(path))
    return qrels


def _restrict_qrels(
    qrels: dict[str, dict[str, int]],
    query_ids: set[str],
    doc_ids: Mapping[str, Any],
    stats: Counter[str],
) -> dict[str, dict[str, int]]:
    """Keep judgements of loaded queries; count (never drop) judged docs absent from the
    corpus, as BEIR's evaluation also keeps them."""
    stats["qrels_queries_not_loaded"] += sum(q not in query_ids for q in qrels)
    kept = {q: judged for q, judged in qrels.items() if q in query_ids}
    stats["qrels_docs_not_in_corpus"] += sum(
        d not in doc_ids for judged in kept.values() for d in judged
    )
    return kept


# --- layout: BEIR --------------------------------------------------------------------------


def _load_beir(folder: Path, split: str) -> Dataset:
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise InputError(f"{folder}: BEIR split {split!r} has no {qrels_path}; splits: {available}")
    fingerprint = _Fingerprint()
    documents, doc_sites = _load_corpus_jsonl(folder / "corpus.jsonl", fingerprint, beir=True)
    qrels = _read_qrels(qrels_path, fingerprint)
    queries_path = folder / "queries.jsonl"
    problems = _Problems()
    ids = _UniqueIds("query")
    queries: list[Query] = []
    for where, record in _jsonl_records(queries_path, fingerprint, problems):
        try:
            query_id = _identifier(record, "_id", allow_int=True)
            ids.check(query_id, where)
            question = _text(record, "text")
            metadata = _mapping(record, "metadata")
        except _Bad as exc:
            problems.add(where, str(exc))
            continue
        if query_id not in qrels:
            continue
        gold = tuple(d for d, grade in qrels[query_id].items() if grade > 0)
        queries.append(Query(query_id, question, (), "retrieval", gold, (), metadata))
    problems.raise_if_any(str(queries_path))
    stats: Counter[str] = Counter()
    kept = _restrict_qrels(qrels, {q.id for q in queries}, doc_sites, stats)
    return _finish(folder, "beir", split, documents, queries, kept, fingerprint, stats)


# --- layout: SQuAD -------------------------------------------------------------------------


def _is_squad(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("data"), list)
        and all(isinstance(a, dict) and "paragraphs" in a for a in data["data"][:1])
    )


def _load_squad(path: Path, data: dict[str, Any], fingerprint: _Fingerprint, split: str) -> Dataset:
    problems = _Problems()
    documents: list[Document] = []
    queries: list[Query] = []
    doc_ids = _UniqueIds("document")
    query_ids = _UniqueIds("question")
    for a, article in enumerate(data["data"]):
        title = article.get("title") if isinstance(article, dict) else None
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(title, str) or not title or not isinstance(paragraphs, list):
            problems.add(f"{path}: data[{a}]", "needs a non-empty 'title' and a 'paragraphs' list")
            continue
        for p, paragraph in enumerate(paragraphs):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            doc_id = f"{title}#{p}"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas", []), list):
                problems.add(where, "a paragraph must be an object with a 'qas' list")
                continue
            try:
                doc_ids.check(doc_id, where)
                metadata = {"title": title.replace("_", " "), "article": title}
                documents.append(_document(doc_id, _text(paragraph, "context"), "", metadata))
            except _Bad as exc:
                problems.add(where, str(exc))
                continue
            for q, qa in enumerate(paragraph.get("qas", [])):
                try:
                    if not isinstance(qa, dict):
                        raise _Bad(f"a question must be an object, got {type(qa).__name__}")
                    query = _squad_query(qa, doc_id)
                    query_ids.check(query.id, f"{where}.qas[{q}]")
                    queries.append(query)
                except _Bad as exc:
                    problems.add(f"{where}.qas[{q}]", str(exc))
    problems.raise_if_any(str(path))
    return _finish(path, "squad", split, documents, queries, None, fingerprint, Counter())


def _answer_texts(qa: Mapping[str, Any], key: str) -> tuple[list[str], list[int]]:
    items = qa.get(key) or []
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("text"), str) for i in items
    ):
        raise _Bad(f"field {key!r} must be a list of {{'text': str, ...}}")
    texts = list(dict.fromkeys(i["text"] for i in items))
    return texts, [i.get("answer_start") for i in items]


def _squad_query(qa: Mapping[str, Any], doc_id: str) -> Query:
    query_id = _identifier(qa, "id")
    question = _text(qa, "question")
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise _Bad(f"field 'is_impossible' must be true or false, got {impossible!r}")
    metadata: dict[str, Any] = {"is_impossible": impossible, "context_doc_id": doc_id}
    if impossible:
        metadata["plausible_answers"] = _answer_texts(qa, "plausible_answers")[0]
        return Query(query_id, question, (), "unanswerable", (), (), metadata)
    answers, starts = _answer_texts(qa, "answers")
    if not answers:
        raise _Bad("no answers and not marked is_impossible")
    metadata["answer_starts"] = starts
    return Query(query_id, question, tuple(answers), "factoid", (doc_id,), (), metadata)


# --- layout: HotpotQA ----------------------------------------------------------------------


def _is_hotpot_record(record: Any) -> bool:
    return isinstance(record, dict) and "supporting_facts" in record and "context" in record


def _hotpot_parts(
    record: Mapping[str, Any],
) -> tuple[list[tuple[str, list[str]]], list[tuple[str, int]]]:
    """(title, sentences) paragraphs and (title, sentence index) facts, from either format."""
    context, facts = record["context"], record["supporting_facts"]
    try:
        if isinstance(context, dict):  # Hugging Face: columns of parallel lists
            paragraphs = list(zip(context["title"], context["sentences"], strict=True))
            pairs = list(zip(facts["title"], facts["sent_id"], strict=True))
        else:  # official: [[title, [sentences]]], [[title, index]]
            paragraphs = [(title, sentences) for title, sentences in context]
            pairs = [(title, index) for title, index in facts]
    except (KeyError, TypeError, ValueError) as exc:
        raise _Bad(f"malformed 'context' or 'supporting_facts' ({exc})") from None
    for title, sentences in paragraphs:
        if not (
            isinstance(title, str)
            and title
            and isinstance(sentences, list)
            and all(isinstance(s, str) for s in sentences)
        ):
            raise _Bad(f"context paragraph {title!r} must be a title and a list of strings")
    if not all(isinstance(t, str) and isinstance(i, int) for t, i in pairs):
        raise _Bad("supporting_facts must be (title, sentence index) pairs")
    return [(t, list(s)) for t, s in paragraphs], pairs


def _load_hotpot(
    path: Path,
    records: Iterable[tuple[str, Any]],
    fingerprint: _Fingerprint,
    split: str,
    problems: _Problems,
) -> Dataset:
    documents: dict[str, Document] = {}
    queries: list[Query] = []
    query_ids = _UniqueIds("question")
    stats: Counter[str] = Counter()
    for where, record in records:
        try:
            if not _is_hotpot_record(record):
                raise _Bad("not a HotpotQA record (needs 'context' and 'supporting_facts')")
            query_id = _identifier(record, "_id" if "_id" in record else "id")
            query_ids.check(query_id, where)
            question, answer = _text(record, "question"), _text(record, "answer")
            task_type = _text(record, "type")
            paragraphs, facts = _hotpot_parts(record)
        except _Bad as exc:
            problems.add(where, str(exc))
            continue
        sentences_by_title: dict[str, list[str]] = {}
        for title, sentences in paragraphs:
            sentences_by_title.setdefault(title, sentences)
            text = "".join(sentences)
            kept = documents.get(title)
            if kept is None:
                metadata = {"title": title, "sentences": sentences}
                documents[title] = Document(id=title, text=text, metadata=metadata)
            elif kept.text != text:  # same title, other text: keep the first, count
                stats["conflicting_titles"] += 1
        gold_sentences: list[str] = []
        for title, index in facts:
            titled = sentences_by_title.get(title)
            if titled is None or not 0 <= index < len(titled):
                stats["supporting_facts_missing"] += 1
                continue
            sentence = titled[index].strip()
            if sentence not in gold_sentences:
                gold_sentences.append(sentence)
            if sentence not in documents[title].text:
                stats["gold_sentences_not_in_gold_docs"] += 1
        gold_doc_ids = tuple(dict.fromkeys(t for t, _ in facts if t in sentences_by_title))
        metadata = {"type": task_type, "level": record.get("level")}
        queries.append(
            Query(
                query_id,
                question,
                (answer,),
                task_type,
                gold_doc_ids,
                tuple(gold_sentences),
                metadata,
            )
        )
    problems.raise_if_any(str(path))
    docs = list(documents.values())
    return _finish(path, "hotpotqa", split, docs, queries, None, fingerprint, stats)


# --- entry points --------------------------------------------------------------------------

_EXPECTED_LAYOUTS = (
    "expected one of: a ragtrim JSONL folder (corpus.jsonl + queries.jsonl, optional "
    "qrels*.tsv); a BEIR folder (corpus.jsonl + queries.jsonl + qrels/<split>.tsv); a SQuAD "
    "v1.1/v2.0 .json file ({'data': [{'title', 'paragraphs'}]}); a HotpotQA .json/.jsonl file "
    "(records with 'context' and 'supporting_facts')"
)


def _finish(
    path: Path,
    layout: str,
    split: str,
    documents: list[Document],
    queries: list[Query],
    qrels: dict[str, dict[str, int]] | None,
    fingerprint: _Fingerprint,
    stats: Counter[str],
) -> Dataset:
    if not queries:
        raise InputError(f"{path}: no usable queries (layout {layout}, split {split!r})")
    tolerated = {key: count for key, count in sorted(stats.items()) if count}
    if tolerated:
        logger.warning("%s: tolerated data irregularities %s", path, tolerated)
    return Dataset(
        name=path.stem if path.is_file() else path.name,
        path=path,
        documents=documents,
        queries=queries,
        qrels=qrels,
        fingerprint=fingerprint.hexdigest(),
        layout=layout,
        split=split,
        stats=tolerated,
    )


def _load_file(path: Path, split: str) -> Dataset:
    fingerprint = _Fingerprint()
    if path.suffix == ".jsonl":
        problems = _Problems()
        records = _jsonl_records(path, fingerprint, problems)
        first = next(records, None)
        if first is None or not _is_hotpot_record(first[1]):
            problems.raise_if_any(str(path))
            raise InputError(f"{path}: unknown data-set layout; {_EXPECTED_LAYOUTS}")
        return _load_hotpot(path, _chain_first(first, records), fingerprint, split, problems)
    if path.suffix != ".json":
        raise InputError(f"{path}: unknown data-set layout; {_EXPECTED_LAYOUTS}")
    data = _read_json(path, fingerprint)
    if _is_squad(data):
        return _load_squad(path, data, fingerprint, split)
    if isinstance(data, list) and data and _is_hotpot_record(data[0]):
        records = ((f"{path}: record {i}", r) for i, r in enumerate(data))
        return _load_hotpot(path, records, fingerprint, split, _Problems())
    raise InputError(f"{path}: unknown data-set layout; {_EXPECTED_LAYOUTS}")


def _chain_first(first: tuple[str, Any], rest: Iterator[tuple[str, Any]]) -> Iterator[Any]:
    yield first
    yield from rest


def load_dataset(path: str | Path, *, split: str = "test") -> Dataset:
    """Load a data set, detecting its layout (see the module docstring).

    ``split`` picks ``queries_<split>.jsonl`` / ``qrels*<split>*.tsv`` (ragtrim) or
    ``qrels/<split>.tsv`` (BEIR); SQuAD and HotpotQA files are one split each and only record it.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        return _load_file(path, split)
    if (path / "corpus.jsonl").is_file() and (path / "qrels").is_dir():
        return _load_beir(path, split)
    if (path / "corpus.jsonl").is_file() and any(path.glob("queries*.jsonl")):
        return _load_ragtrim(path, split)
    found = sorted(p.name for p in path.iterdir())[:20]
    raise InputError(f"{path}: unknown data-set layout, found {found}; {_EXPECTED_LAYOUTS}")


def iter_datasets(root: str | Path, *, split: str = "test") -> Iterator[Dataset]:
    """Load each data-set folder under ``root`` (e.g. ``../shared/datasets``), by name, lazily.

    Hidden folders and ``_``-prefixed ones are skipped; any other folder must be a data set.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of data sets")
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and not folder.name.startswith((".", "_")):
            yield load_dataset(folder, split=split)
