import numpy as np
import pytest
from dedup_support import (
    COUNTER,
    BagOfWordsEmbedder,
    candidates,
    context,
    make_chunk,
    sentence_spans,
)

from ragtrim.dedup import Deduplicator, exact_key, merge_overlaps, mmr_order
from ragtrim.errors import ConfigError, InputError
from ragtrim.stage import Stage, available_stages
from ragtrim.types import Candidate, Chunk, DropReason, chunk_id

SENTENCES = [
    "Alpha opens the manual.",
    "Beta explains the setup.",
    "Gamma covers the failure modes.",
    "Delta lists the limits.",
    "Epsilon closes it.",
]
DOC = " ".join(SENTENCES)
SPANS = sentence_spans(DOC)

LEXICAL_ONLY = {"semantic": False}


def doc_chunk(first: int, last: int, doc_id: str = "manual", **fields) -> Chunk:
    """Sentences first..last (inclusive) of DOC."""
    return make_chunk(doc_id, DOC, SPANS[first][0], SPANS[last][1], **fields)


def run(stage: Deduplicator, items: list[Candidate], embedder=None):
    return stage.run(context(embedder), items)


# --- overlap merging ---------------------------------------------------------------------


def test_overlapping_chunks_merge_into_union_without_repeated_sentence():
    a, b = doc_chunk(0, 2), doc_chunk(2, 4)
    other = make_chunk("other", "Unrelated text about kittens.", 0, 29)
    items = [
        Candidate(a, 0.9, {"bm25": 1.0, "rerank": 0.9}),
        Candidate(other, 0.8, {"rerank": 0.8}),
        Candidate(b, 0.7, {"bm25": 2.0, "dense": 0.3}),
    ]
    out = run(Deduplicator(**LEXICAL_ONLY), items)

    merged = out.candidates[0]
    assert [c.id for c in out.candidates] == [chunk_id("manual", 0, len(DOC)), other.id]
    assert merged.chunk.text == DOC[merged.chunk.start : merged.chunk.end] == DOC
    assert [merged.chunk.text[x:y] for x, y in merged.chunk.sentences] == SENTENCES
    assert merged.chunk.token_count == COUNTER.count(DOC)
    assert merged.score == 0.9
    assert merged.scores == {"bm25": 2.0, "rerank": 0.9, "dense": 0.3}

    assert [(d.chunk_id, d.reason, d.kept_id) for d in out.drops] == [
        (a.id, DropReason.OVERLAP_MERGED, merged.id),
        (b.id, DropReason.OVERLAP_MERGED, merged.id),
    ]
    saved = a.token_count + b.token_count - merged.chunk.token_count
    assert out.drops[0].tokens == 0  # the leftmost piece's text is all in the merge
    assert out.drops[1].tokens == saved > 0
    assert out.drops[1].detail == f"overlap={len(SENTENCES[2])} chars"
    assert out.stats == {
        "tokens_removed": {"overlap": saved, "exact": 0, "near": 0, "semantic": 0},
        "kept": 2,
    }


def test_touching_chunks_join_text():
    a = make_chunk("manual", DOC, 0, SPANS[1][0])  # "Alpha opens the manual. "
    b = make_chunk("manual", DOC, SPANS[1][0], SPANS[2][1])
    out = run(Deduplicator(**LEXICAL_ONLY), candidates([b, a]))
    (merged,) = out.candidates
    assert merged.chunk.text == a.text + b.text == DOC[0 : SPANS[2][1]]
    assert merged.id == chunk_id("manual", 0, SPANS[2][1])
    assert merged.chunk.sentences == tuple(SPANS[:3])
    assert {d.detail for d in out.drops} == {"leftmost piece", "adjacent"}


def test_gap_or_other_document_is_not_merged():
    a = make_chunk("manual", DOC, 0, SPANS[0][1])  # ends before the space
    b = make_chunk("manual", DOC, SPANS[1][0], SPANS[1][1])  # starts after it
    c = make_chunk("copy", DOC, 10, 40)
    out = run(Deduplicator(**LEXICAL_ONLY), candidates([a, b, c]))
    assert [x.id for x in out.candidates] == [a.id, b.id, c.id]
    assert out.drops == []


def test_contained_better_ranked_chunk_keeps_container_id_at_its_rank():
    container = doc_chunk(0, 3, section=("Manual",), metadata={"lang": "en"})
    inner = doc_chunk(1, 1, section=("Manual", "Setup"), metadata={"lang": "de"})
    first = make_chunk("faq", "A question about routers.", 0, 25)
    items = [Candidate(first, 3.0), Candidate(inner, 2.0), Candidate(container, 1.0)]
    out = run(Deduplicator(**LEXICAL_ONLY), items)

    assert [c.id for c in out.candidates] == [first.id, container.id]
    merged = out.candidates[1]
    assert merged.chunk.text == container.text
    assert merged.chunk.section == ("Manual", "Setup")  # the best-ranked member's
    assert merged.chunk.metadata == {"lang": "de"}
    assert merged.score == 2.0
    (drop,) = out.drops
    assert (drop.chunk_id, drop.kept_id, drop.detail) == (inner.id, container.id, "contained")
    assert drop.tokens == inner.token_count


def test_chain_of_overlaps_merges_into_one():
    a, b, c = doc_chunk(0, 1), doc_chunk(1, 3), doc_chunk(3, 4)
    out = run(Deduplicator(**LEXICAL_ONLY), candidates([c, a, b]))
    (merged,) = out.candidates
    assert merged.chunk.text == DOC
    assert sorted(d.chunk_id for d in out.drops) == sorted([a.id, b.id, c.id])
    total = a.token_count + b.token_count + c.token_count - merged.chunk.token_count
    assert sum(d.tokens for d in out.drops) == total == out.stats["tokens_removed"]["overlap"]


def test_partial_sentence_spans_inside_others_are_dropped():
    # a ends mid-sentence: its clipped last sentence lies inside b's full one
    a = make_chunk("manual", DOC, 0, SPANS[1][0] + 10)
    b = make_chunk("manual", DOC, SPANS[1][0], SPANS[2][1])
    assert a.sentences[-1] == (SPANS[1][0], SPANS[1][0] + 10)
    (merged,) = run(Deduplicator(**LEXICAL_ONLY), candidates([a, b])).candidates
    assert merged.chunk.sentences == tuple(SPANS[:3])


def test_merge_rejects_chunks_whose_text_is_not_the_document_slice():
    a = doc_chunk(0, 2)
    b = doc_chunk(2, 4)
    bad = Chunk(b.id, b.doc_id, "X" + b.text[1:], b.start, b.end, b.token_count)
    with pytest.raises(InputError, match="dedup.merge_overlaps.*texts differ"):
        merge_overlaps(candidates([a, bad]), COUNTER)
    short = Chunk(b.id, b.doc_id, b.text[:-1], b.start, b.end, b.token_count)
    with pytest.raises(InputError, match="characters but spans"):
        merge_overlaps(candidates([a, short]), COUNTER)
    # without merging, the same candidates pass through untouched
    out = run(Deduplicator(merge_overlaps=False, **LEXICAL_ONLY), candidates([a, bad]))
    assert len(out.candidates) == 2


# --- exact duplicates --------------------------------------------------------------------

FAQ = "How do I reset the router? Hold the button for ten seconds."
MANUAL_COPY = "  how do I reset   the router?\nHold the button for TEN seconds.!! "
REWORDED = "how do i reset the router hold the button for ten seconds"


def test_exact_key_normalisation():
    assert (
        exact_key(FAQ)
        == exact_key(MANUAL_COPY)
        == ("how do i reset the router? hold the button for ten seconds")
    )
    assert exact_key("¡Hola, mundo!") == "hola, mundo"
    assert exact_key("...") == ""
    assert exact_key("ﬁne") == "fine"


def test_exact_copies_dropped_with_kept_twin():
    other = make_chunk("other", "Routers need firmware updates.", 0, 30)
    faq = make_chunk("faq", FAQ, 0, len(FAQ))
    copy = make_chunk("manual", MANUAL_COPY, 0, len(MANUAL_COPY))
    out = run(Deduplicator(**LEXICAL_ONLY), candidates([other, faq, copy]))
    assert [c.id for c in out.candidates] == [other.id, faq.id]
    (drop,) = out.drops
    assert (drop.chunk_id, drop.reason, drop.kept_id) == (copy.id, DropReason.DUPLICATE, faq.id)
    assert drop.tokens == copy.token_count == out.stats["tokens_removed"]["exact"]


def test_internal_punctuation_is_not_exact_but_is_near_duplicate():
    faq = make_chunk("faq", FAQ, 0, len(FAQ))
    reworded = make_chunk("blog", REWORDED, 0, len(REWORDED))
    out = run(Deduplicator(**LEXICAL_ONLY), candidates([faq, reworded]))
    (drop,) = out.drops
    assert (drop.reason, drop.kept_id, drop.detail) == (
        DropReason.NEAR_DUPLICATE,
        faq.id,
        "jaccard=1.00",
    )
    out = run(Deduplicator(near_duplicate=False, **LEXICAL_ONLY), candidates([faq, reworded]))
    assert len(out.candidates) == 2


# --- near duplicates ---------------------------------------------------------------------

TERMS = [f"term{i}" for i in range(30)]


def text_chunk(doc_id: str, words: list[str]) -> Chunk:
    text = " ".join(words) + "."
    return make_chunk(doc_id, text, 0, len(text))


def test_near_duplicate_with_hand_computed_jaccard():
    original = text_chunk("a", TERMS)
    edited = text_chunk("b", TERMS[:29] + ["changed"])  # 27 shared of 29 shingles
    distinct = text_chunk("c", TERMS[::-1])
    out = run(Deduplicator(**LEXICAL_ONLY), candidates([original, distinct, edited]))
    assert [c.id for c in out.candidates] == [original.id, distinct.id]
    (drop,) = out.drops
    assert (drop.chunk_id, drop.reason, drop.kept_id) == (
        edited.id,
        DropReason.NEAR_DUPLICATE,
        original.id,
    )
    assert drop.detail == "jaccard=0.93"
    assert drop.tokens == edited.token_count == out.stats["tokens_removed"]["near"]


def test_jaccard_threshold_is_inclusive_and_configurable():
    ten = text_chunk("a", TERMS[:10])
    edited = text_chunk("b", TERMS[:9] + ["changed"])  # 7 shared of 9: 0.777...
    items = candidates([ten, edited])
    assert len(run(Deduplicator(**LEXICAL_ONLY), items).candidates) == 2
    out = run(Deduplicator(jaccard_threshold=0.77, **LEXICAL_ONLY), items)
    assert [d.detail for d in out.drops] == ["jaccard=0.78"]
    half = text_chunk("c", TERMS[:4])  # 2 shingles, both in `ten`'s 8: exactly 0.25
    out = run(Deduplicator(jaccard_threshold=0.25, **LEXICAL_ONLY), candidates([ten, half]))
    assert [d.chunk_id for d in out.drops] == [half.id]


def test_twin_is_the_most_similar_kept_candidate():
    others = [f"other{i}" for i in range(10)]
    base = text_chunk("a", TERMS[:20])  # 18 shingles
    other = text_chunk("b", TERMS[:10] + others)  # shares 8 with base: 8/28 = 0.29
    # shares 8 + 2 + 4 = 14 with `other` (14/22 = 0.64) and 8 + 2 = 10 with base (10/26 = 0.38)
    late = text_chunk("c", TERMS[:10] + others[:6] + TERMS[16:20])
    out = run(Deduplicator(jaccard_threshold=0.35, **LEXICAL_ONLY), candidates([base, other, late]))
    assert [c.id for c in out.candidates] == [base.id, other.id]
    (drop,) = out.drops
    assert (drop.chunk_id, drop.kept_id, drop.detail) == (late.id, other.id, "jaccard=0.64")


def test_minhash_method_estimates_and_says_so():
    words = [f"w{i}" for i in range(200)]
    chunks = [text_chunk(f"d{i}", words[:199] + [f"end{i}"]) for i in range(30)]
    chunks.append(text_chunk("other", TERMS))
    estimated = run(Deduplicator(near_method="minhash", **LEXICAL_ONLY), candidates(chunks))
    exact = run(Deduplicator(**LEXICAL_ONLY), candidates(chunks))
    assert [c.id for c in estimated.candidates] == [chunks[0].id, chunks[-1].id]
    assert [c.id for c in exact.candidates] == [chunks[0].id, chunks[-1].id]
    assert estimated.notes == ["near_duplicate: Jaccard estimated with MinHash (num_perm=128)"]
    assert exact.notes == []
    assert {d.kept_id for d in estimated.drops} == {chunks[0].id}
    assert exact.drops[0].detail == f"jaccard={197 / 199:.2f}"  # all but the last shingle


# --- semantic duplicates and MMR ---------------------------------------------------------


def test_semantic_duplicate_with_test_embedder():
    words = ["router", "reset", "button", "hold", "seconds", "ten", "light", "blinks"]
    a = text_chunk("a", words)
    shuffled = text_chunk("b", words[::-1])  # same bag of words, no shared shingle
    other = text_chunk("c", ["cats", "sleep", "most", "of", "the", "day"])
    embedder = BagOfWordsEmbedder()
    out = run(Deduplicator(), candidates([a, other, shuffled]), embedder)
    assert embedder.calls == 1
    assert [c.id for c in out.candidates] == [a.id, other.id]
    (drop,) = out.drops
    assert (drop.chunk_id, drop.reason, drop.kept_id, drop.detail) == (
        shuffled.id,
        DropReason.SEMANTIC_DUPLICATE,
        a.id,
        "cosine=1.000",
    )
    assert out.stats["tokens_removed"]["semantic"] == shuffled.token_count
    out = run(Deduplicator(semantic=False), candidates([a, other, shuffled]))
    assert len(out.candidates) == 3


def test_semantic_without_vectors_is_a_config_error():
    items = candidates([text_chunk("a", TERMS[:5]), text_chunk("b", TERMS[5:10])])
    with pytest.raises(ConfigError, match=r"dedup\.semantic"):
        Deduplicator().run(context(), items)
    with pytest.raises(ConfigError, match=r"dedup\.semantic"):
        Deduplicator().run(context(), [])  # a configuration problem, whatever the input
    with pytest.raises(ConfigError, match=r"dedup\.mmr_lambda"):
        Deduplicator(semantic=False, mmr_lambda=0.5).run(context(), items)


def test_mmr_order_by_hand():
    relevance = np.array([1.0, 0.8, 0.0])
    similarity = np.array([[1.0, 0.75, 0.0], [0.75, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # after 0: item 1 scores 0.3*0.8 - 0.7*0.75 = -0.285, item 2 scores 0
    assert mmr_order(relevance, similarity, 0.3) == [0, 2, 1]
    assert mmr_order(relevance, similarity, 1.0) == [0, 1, 2]
    assert mmr_order(relevance, similarity, 0.5) == [0, 1, 2]  # 0.4 - 0.375 > 0
    assert mmr_order(np.zeros(0), np.zeros((0, 0)), 0.5) == []


def test_mmr_reorders_without_dropping():
    a = text_chunk("a", ["apple", "banana", "cherry", "plum"])
    a2 = text_chunk("b", ["apple", "banana", "cherry", "fig"])
    b = text_chunk("c", ["zebra", "yak", "walrus", "otter"])
    embedder = BagOfWordsEmbedder()
    vectors = embedder.embed([a.text, a2.text, b.text])
    assert vectors[0] @ vectors[1] == pytest.approx(0.75) and vectors[0] @ vectors[2] == 0
    items = candidates([a, a2, b], scores=[1.0, 0.9, 0.5])
    out = run(Deduplicator(mmr_lambda=0.3), items, embedder)
    assert [c.id for c in out.candidates] == [a.id, b.id, a2.id]
    assert out.drops == []
    out = run(Deduplicator(mmr_lambda=1.0), items, embedder)
    assert [c.id for c in out.candidates] == [a.id, a2.id, b.id]


# --- configuration -----------------------------------------------------------------------


def test_round_trip_to_dict_from_dict():
    stage = Deduplicator(jaccard_threshold=0.7, shingle_size=4, semantic=False, mmr_lambda=0.25)
    data = stage.to_dict()
    assert data == {
        "type": "Deduplicator",
        "init_parameters": {
            "merge_overlaps": True,
            "exact": True,
            "near_duplicate": True,
            "jaccard_threshold": 0.7,
            "shingle_size": 4,
            "near_method": "exact",
            "num_perm": 128,
            "semantic": False,
            "semantic_threshold": 0.95,
            "mmr_lambda": 0.25,
        },
    }
    assert Stage.from_dict(data) == stage
    assert Deduplicator.from_dict(data) == stage
    assert Stage.from_dict(Deduplicator().to_dict()) == Deduplicator()
    assert "Deduplicator" in available_stages("dedup")
    assert Deduplicator.kind == "dedup"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"jaccard_threshold": 0}, "jaccard_threshold"),
        ({"jaccard_threshold": 1.01}, "jaccard_threshold"),
        ({"semantic_threshold": 0.0}, "semantic_threshold"),
        ({"mmr_lambda": 1.5}, "mmr_lambda"),
        ({"mmr_lambda": -0.1}, "mmr_lambda"),
        ({"shingle_size": 0}, "shingle_size"),
        ({"num_perm": 0}, "num_perm"),
        ({"near_method": "lsh"}, "near_method"),
        ({"threshold": 0.5}, "threshold"),
    ],
)
def test_invalid_config_names_the_field(params, field):
    with pytest.raises(ConfigError, match=rf"Deduplicator\.{field}"):
        Deduplicator(**params)


def test_single_and_empty_inputs_pass_through():
    stage = Deduplicator(**LEXICAL_ONLY)
    assert run(stage, []).candidates == []
    only = candidates([doc_chunk(0, 1)])
    out = run(stage, only)
    assert out.candidates == only and out.drops == []
    assert out.stats == {
        "tokens_removed": {"overlap": 0, "exact": 0, "near": 0, "semantic": 0},
        "kept": 1,
    }


def test_merged_chunks_use_their_members_stored_vectors_without_model_calls():
    """With an index, a merged chunk's vector is the mean of its members' stored vectors."""
    text = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota. Kappa lambda mu."
    first, second = make_chunk("d", text, 0, 36), make_chunk("d", text, 18, 52)
    other = make_chunk("e", "Nu xi omicron pi.", 0, 17)
    embedder = BagOfWordsEmbedder()
    stored = {c.id: embedder.embed([c.text])[0] for c in (first, second, other)}

    class StoredVectors:
        """A collaborator standing in for the index: it only serves stored chunk vectors."""

        fingerprint = "test"

        def chunk_vector(self, chunk_id):
            return stored.get(chunk_id)

    ctx = context(embedder)
    ctx.index = StoredVectors()
    calls_before = embedder.calls
    output = Deduplicator(semantic=True).run(ctx, candidates([first, second, other]))
    assert embedder.calls == calls_before
    assert [c.chunk.doc_id for c in output.candidates] == ["d", "e"]
    assert output.candidates[0].chunk.text == text[0:52]
