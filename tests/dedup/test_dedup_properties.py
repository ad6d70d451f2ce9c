"""Invariants of the deduplicator on generated documents, spans, copies and near-copies."""

from dataclasses import dataclass

from dedup_support import COUNTER, BagOfWordsEmbedder, context, make_chunk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtrim.dedup import Deduplicator, exact_jaccard, exact_key, word_shingles
from ragtrim.types import Candidate, DropReason, chunk_id

VOCAB = ["router", "reset", "cable", "light", "blinks", "hold", "press", "power", "port", "wifi"]
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass
class Case:
    docs: dict[str, str]
    candidates: list[Candidate]


@st.composite
def sentences(draw) -> str:
    words = draw(st.lists(st.sampled_from(VOCAB), min_size=2, max_size=7))
    return " ".join(words).capitalize() + draw(st.sampled_from([".", "!", "?"]))


@st.composite
def cases(draw) -> Case:
    docs: dict[str, str] = {}
    for i in range(draw(st.integers(1, 3))):
        docs[f"doc{i}"] = " ".join(draw(st.lists(sentences(), min_size=2, max_size=8)))
    originals = list(docs.items())
    for i, (_, text) in enumerate(originals):
        kind = draw(st.sampled_from(["none", "mirror", "near", "shouting"]))
        if kind == "mirror":  # a page copied verbatim
            docs[f"mirror{i}"] = text
        elif kind == "near":  # a copy with one word changed
            words = text.split(" ")
            words[draw(st.integers(0, len(words) - 1))] = "changed"
            docs[f"near{i}"] = " ".join(words)
        elif kind == "shouting":  # same text, different case and spacing
            docs[f"loud{i}"] = "  " + text.upper().replace(" ", "  ") + " "
    spans: set[tuple[str, int, int]] = set()
    for doc_id, text in docs.items():
        n = draw(st.integers(0, 4))
        for _ in range(n):
            start = draw(st.integers(0, len(text) - 1))
            end = draw(st.integers(start + 1, min(len(text), start + 120)))
            spans.add((doc_id, start, end))
        if draw(st.booleans()):
            spans.add((doc_id, 0, len(text)))
    ordered = draw(st.permutations(sorted(spans)))
    chunks = [make_chunk(d, docs[d], s, e) for d, s, e in ordered]
    scores = sorted((draw(st.floats(0, 10)) for _ in chunks), reverse=True)
    return Case(docs, [Candidate(c, s, {"rerank": s}) for c, s in zip(chunks, scores, strict=True)])


STAGES = {
    "lexical": Deduplicator(semantic=False),
    "all": Deduplicator(),
    "loose": Deduplicator(jaccard_threshold=0.5, semantic_threshold=0.8, shingle_size=2),
}


def run(stage: Deduplicator, items: list[Candidate]):
    return stage.run(context(BagOfWordsEmbedder()), items)


def members_of(out, kept_id: str) -> list[str]:
    return [
        d.chunk_id
        for d in out.drops
        if d.reason is DropReason.OVERLAP_MERGED and d.kept_id == kept_id
    ]


@PROPERTY_SETTINGS
@given(case=cases(), name=st.sampled_from(sorted(STAGES)))
def test_every_input_is_kept_merged_or_dropped_once(case, name):
    out = run(STAGES[name], case.candidates)
    input_ids = [c.id for c in case.candidates]
    output_ids = [c.id for c in out.candidates]
    drop_count = {i: sum(d.chunk_id == i for d in out.drops) for i in input_ids}
    for i in input_ids:
        assert (i in output_ids) != (drop_count[i] == 1), i
        assert drop_count[i] <= 1
    merged_ids = {d.kept_id for d in out.drops if d.reason is DropReason.OVERLAP_MERGED}
    assert set(output_ids) <= set(input_ids) | merged_ids
    # a merged candidate may itself be dropped later (as a copy of something better ranked)
    assert {d.chunk_id for d in out.drops} <= set(input_ids) | merged_ids
    assert len(set(output_ids)) == len(output_ids)


@PROPERTY_SETTINGS
@given(case=cases(), name=st.sampled_from(sorted(STAGES)))
def test_kept_twins_lead_to_kept_candidates(case, name):
    out = run(STAGES[name], case.candidates)
    twin_of = {d.chunk_id: d.kept_id for d in out.drops}
    output_ids = {c.id for c in out.candidates}
    for drop in out.drops:
        current, steps = drop.kept_id, 0
        while current not in output_ids:
            current, steps = twin_of[current], steps + 1
            assert steps <= len(out.drops)


@PROPERTY_SETTINGS
@given(case=cases(), name=st.sampled_from(sorted(STAGES)))
def test_outputs_are_document_slices_and_distinct(case, name):
    out = run(STAGES[name], case.candidates)
    keys = [exact_key(c.chunk.text) for c in out.candidates]
    assert len(keys) == len(set(keys))
    for candidate in out.candidates:
        chunk = candidate.chunk
        assert chunk.text == case.docs[chunk.doc_id][chunk.start : chunk.end]
        assert chunk.id == chunk_id(chunk.doc_id, chunk.start, chunk.end)
        assert chunk.token_count == COUNTER.count(chunk.text)
        spans = list(chunk.sentences)
        assert spans == sorted(spans) and len(set(spans)) == len(spans)
        for k, (a, b) in enumerate(spans):
            assert 0 <= a < b <= len(chunk.text)
            assert not any(x <= a and b <= y for j, (x, y) in enumerate(spans) if j != k)
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for candidate in out.candidates:
        by_doc.setdefault(candidate.chunk.doc_id, []).append(
            (candidate.chunk.start, candidate.chunk.end)
        )
    for spans in by_doc.values():  # no two kept pieces of a document overlap or touch
        spans.sort()
        assert all(b[0] > a[1] for a, b in zip(spans, spans[1:], strict=False))


@PROPERTY_SETTINGS
@given(case=cases())
def test_kept_candidates_are_below_both_thresholds(case):
    stage = STAGES["all"]
    out = run(stage, case.candidates)
    texts = [c.chunk.text for c in out.candidates]
    shingles = [word_shingles(t) for t in texts]
    vectors = BagOfWordsEmbedder().embed(texts)
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if len(shingles[i]) and len(shingles[j]):
                assert exact_jaccard(shingles[i], shingles[j]) < stage.config.jaccard_threshold
            assert float(vectors[i] @ vectors[j]) < stage.config.semantic_threshold + 1e-6


@PROPERTY_SETTINGS
@given(case=cases(), name=st.sampled_from(sorted(STAGES)))
def test_kept_order_follows_input_ranks(case, name):
    out = run(STAGES[name], case.candidates)
    rank = {c.id: position for position, c in enumerate(case.candidates)}
    best_rank = [
        min(rank[i] for i in [c.id, *members_of(out, c.id)] if i in rank) for c in out.candidates
    ]
    assert best_rank == sorted(best_rank)
    for candidate in out.candidates:
        members = [case.candidates[rank[i]] for i in members_of(out, candidate.id)]
        if candidate.id in rank:
            members.append(case.candidates[rank[candidate.id]])
        assert candidate.score == max(m.score for m in members)


@PROPERTY_SETTINGS
@given(case=cases(), name=st.sampled_from(sorted(STAGES)))
def test_idempotent(case, name):
    first = run(STAGES[name], case.candidates)
    second = run(STAGES[name], first.candidates)
    assert [c.id for c in second.candidates] == [c.id for c in first.candidates]
    assert second.drops == []
    assert [c.chunk for c in second.candidates] == [c.chunk for c in first.candidates]


@PROPERTY_SETTINGS
@given(case=cases(), name=st.sampled_from(sorted(STAGES)))
def test_stats_add_up(case, name):
    out = run(STAGES[name], case.candidates)
    by_reason = {
        "overlap": DropReason.OVERLAP_MERGED,
        "exact": DropReason.DUPLICATE,
        "near": DropReason.NEAR_DUPLICATE,
        "semantic": DropReason.SEMANTIC_DUPLICATE,
    }
    removed = out.stats["tokens_removed"]
    for key, reason in by_reason.items():
        assert removed[key] == sum(d.tokens for d in out.drops if d.reason is reason)
    assert out.stats["kept"] == len(out.candidates)
    # overlap savings are exact: members' counts minus the merged chunk's count
    for candidate in out.candidates:
        members = members_of(out, candidate.id)
        if members:
            counts = {c.id: c.chunk.token_count for c in case.candidates}
            survivor = counts.get(candidate.id, 0)
            saved = sum(counts[m] for m in members) + survivor - candidate.chunk.token_count
            assert saved == sum(
                d.tokens for d in out.drops if d.chunk_id in members and d.kept_id == candidate.id
            )


@PROPERTY_SETTINGS
@given(case=cases(), weight=st.floats(0, 1))
def test_mmr_only_reorders(case, weight):
    plain = run(Deduplicator(), case.candidates)
    reordered = run(Deduplicator(mmr_lambda=weight), case.candidates)
    assert sorted(c.id for c in reordered.candidates) == sorted(c.id for c in plain.candidates)
    assert reordered.drops == plain.drops
    if reordered.candidates:
        assert reordered.candidates[0].score == max(c.score for c in plain.candidates)


def test_generated_cases_exercise_every_step():
    """Guard against a strategy that never produces the situations the properties are about."""
    reasons: set[DropReason] = set()

    @settings(max_examples=80, deadline=None, database=None, derandomize=True)
    @given(case=cases())
    def collect(case):
        reasons.update(d.reason for d in run(STAGES["all"], case.candidates).drops)

    collect()
    assert reasons >= {
        DropReason.OVERLAP_MERGED,
        DropReason.DUPLICATE,
        DropReason.NEAR_DUPLICATE,
        DropReason.SEMANTIC_DUPLICATE,
    }
