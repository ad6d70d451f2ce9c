import numpy as np
import pytest

from ragtrim.errors import ConfigError, FilterError, IndexStoreError
from ragtrim.filtering import MetadataFilter
from ragtrim.query import QueryContext
from ragtrim.stage import Stage
from ragtrim.tokens import get_counter
from ragtrim.types import Candidate, Chunk, Drop, DropReason


class TableIndex:
    """A collaborator: the read side of an index as plain arrays (implements IndexView)."""

    def __init__(self, documents, chunk_rows, alive, fingerprint="v1"):
        self.documents = documents
        self.rows = np.asarray(chunk_rows, dtype=np.int64)
        self.alive = np.asarray(alive, dtype=bool)
        self.fingerprint = fingerprint
        self.metadata_reads = 0

    def document_metadata(self):
        self.metadata_reads += 1
        return self.documents

    def chunk_document_rows(self):
        return self.rows

    def alive_mask(self):
        return self.alive

    def chunk_vector(self, chunk_id):
        return None

    def sentence_vectors(self, chunk_id):
        return None

    def sentence_vectors_of(self, chunk_id):
        return None

    def sentence_terms_of(self, chunk_id):
        return None


DOCUMENTS = [
    {"tenant": "acme", "product": "api", "updated": "2025-01-10"},
    {"tenant": "acme", "product": "ui", "updated": "2025-03-05T08:00:00Z"},
    {"tenant": "globex", "product": "api", "updated": "2025-03-20"},
    {"tenant": "acme", "product": "api", "updated": "2025-04-01"},
]
# chunk rows -> document rows; chunk 6 (doc 3) is tombstoned, as is all of doc 3's old version
CHUNK_ROWS = [0, 0, 1, 2, 2, 3, 3, 3]
ALIVE = [True, True, True, True, True, True, False, True]


@pytest.fixture(scope="module")
def counter():
    return get_counter("o200k_base")


def make_ctx(counter, filters=None, index=None, allowed=None):
    return QueryContext(
        query="rate limits", counter=counter, filters=filters, index=index, allowed=allowed
    )


def make_index(**overrides):
    params = {"documents": DOCUMENTS, "chunk_rows": CHUNK_ROWS, "alive": ALIVE}
    params.update(overrides)
    return TableIndex(**params)


def candidate(chunk_id, metadata, tokens=10, score=1.0):
    chunk = Chunk(
        id=chunk_id,
        doc_id=chunk_id.split("#")[0],
        text="x",
        start=0,
        end=1,
        token_count=tokens,
        metadata=metadata,
    )
    return Candidate(chunk, score)


def test_no_filter_passes_through(counter):
    index = make_index()
    ctx = make_ctx(counter, index=index)
    given = [candidate("d#0-1", {"tenant": "acme"})]
    out = MetadataFilter().run(ctx, given)
    assert ctx.allowed is None
    assert out.candidates == given
    assert out.drops == [] and out.notes == [] and out.stats == {}
    assert index.metadata_reads == 0


def test_empty_query_filter_is_no_filter(counter):
    ctx = make_ctx(counter, filters={}, index=make_index())
    MetadataFilter().run(ctx, [])
    assert ctx.allowed is None


def test_query_filter_sets_allowed_chunk_rows(counter):
    ctx = make_ctx(counter, filters={"product": "api"}, index=make_index())
    out = MetadataFilter().run(ctx, [])
    assert ctx.allowed.tolist() == [True, True, False, True, True, True, False, True]
    assert out.stats == {"allowed_chunks": 6, "allowed_documents": 3}
    assert out.notes == []
    assert out.candidates == []


def test_tombstoned_rows_are_never_allowed(counter):
    alive = [False, False, True, True, False, True, False, False]
    ctx = make_ctx(counter, filters={"tenant": {"$exists": True}}, index=make_index(alive=alive))
    out = MetadataFilter().run(ctx, [])
    assert ctx.allowed.tolist() == alive
    assert out.stats == {"allowed_chunks": 3, "allowed_documents": 3}


def test_base_filter_is_anded_with_query_filters(counter):
    stage = MetadataFilter(base_filter={"tenant": "acme"})
    ctx = make_ctx(counter, filters={"updated": {"$gte": "2025-03-01"}}, index=make_index())
    out = stage.run(ctx, [])
    assert ctx.allowed.tolist() == [False, False, True, False, False, True, False, True]
    assert out.stats == {"allowed_chunks": 3, "allowed_documents": 2}

    ctx = make_ctx(counter, index=make_index())
    out = stage.run(ctx, [])
    assert ctx.allowed.tolist() == [True, True, True, False, False, True, False, True]
    assert out.stats == {"allowed_chunks": 5, "allowed_documents": 3}


def test_an_existing_allowed_mask_is_narrowed(counter):
    earlier = np.array([True, False, True, True, True, True, True, False])
    ctx = make_ctx(counter, filters={"product": "api"}, index=make_index(), allowed=earlier)
    MetadataFilter().run(ctx, [])
    assert ctx.allowed.tolist() == [True, False, False, True, True, True, False, False]


def test_notes_for_no_match_and_unknown_fields(counter):
    ctx = make_ctx(
        counter,
        filters={"$or": [{"prodcut": "api"}, {"author.name": "Ada"}], "tenant": "acme"},
        index=make_index(),
    )
    out = MetadataFilter().run(ctx, [])
    assert not ctx.allowed.any()
    assert out.stats == {"allowed_chunks": 0, "allowed_documents": 0}
    assert out.notes == [
        "filter matched no chunks",
        "filter field 'author.name' occurs in no document",
        "filter field 'prodcut' occurs in no document",
    ]


def test_field_only_on_deleted_documents_counts_as_absent(counter):
    documents = [{"product": "api"}, {"product": "ui", "legacy": True}]
    index = make_index(documents=documents, chunk_rows=[0, 1], alive=[True, False])
    out = MetadataFilter().run(make_ctx(counter, filters={"legacy": True}, index=index), [])
    assert "filter field 'legacy' occurs in no document" in out.notes


def test_candidates_are_kept_or_dropped_as_filtered(counter):
    given = [
        candidate("a#0-5", {"tenant": "acme", "lang": "en"}, tokens=12),
        candidate("b#0-5", {"tenant": "globex", "lang": "en"}, tokens=30),
        candidate("c#0-5", {"tenant": "acme"}, tokens=7),
    ]
    ctx = make_ctx(counter, filters={"lang": "en"})
    out = MetadataFilter(base_filter={"tenant": "acme"}).run(ctx, given)
    assert ctx.allowed is None
    assert [c.id for c in out.candidates] == ["a#0-5"]
    assert out.drops == [
        Drop("b#0-5", DropReason.FILTERED, stage="filter", tokens=30),
        Drop("c#0-5", DropReason.FILTERED, stage="filter", tokens=7),
    ]
    assert out.stats == {}


def test_all_candidates_dropped_is_noted(counter):
    ctx = make_ctx(counter, filters={"lang": "de"})
    out = MetadataFilter().run(ctx, [candidate("a#0-1", {"lang": "en"})])
    assert out.candidates == []
    assert out.notes == ["filter matched no candidates"]


def test_bad_query_filter_raises_filter_error(counter):
    filters = {"$and": [{"a": 1}, {"b": {"$regex": "x"}}]}
    ctx = make_ctx(counter, filters=filters, index=make_index())
    with pytest.raises(FilterError) as caught:
        MetadataFilter().run(ctx, [])
    assert caught.value.path == "$and[1].b.$regex"


def test_masks_are_cached_per_filter_and_fingerprint(counter):
    stage = MetadataFilter()
    index = make_index()
    first = make_ctx(counter, filters={"product": "api"}, index=index)
    stage.run(first, [])
    second = make_ctx(counter, filters={"product": {"$eq": "api"}}, index=index)
    stage.run(second, [])
    assert index.metadata_reads == 1
    assert second.allowed.tolist() == first.allowed.tolist()
    with pytest.raises(ValueError):
        second.allowed[0] = False

    index.fingerprint = "v2"
    index.alive = np.zeros(len(CHUNK_ROWS), dtype=bool)
    third = make_ctx(counter, filters={"product": "api"}, index=index)
    stage.run(third, [])
    assert index.metadata_reads == 2
    assert not third.allowed.any()


def test_cache_evicts_least_recently_used(counter):
    stage = MetadataFilter(cache_size=1)
    index = make_index()
    for filters in ({"product": "api"}, {"product": "ui"}, {"product": "api"}):
        stage.run(make_ctx(counter, filters=filters, index=index), [])
    assert index.metadata_reads == 3


def test_cache_size_zero_disables_caching(counter):
    stage = MetadataFilter(cache_size=0)
    index = make_index()
    for _ in range(2):
        stage.run(make_ctx(counter, filters={"product": "api"}, index=index), [])
    assert index.metadata_reads == 2


def test_inconsistent_index_is_reported(counter):
    index = make_index(chunk_rows=[0, 1, 9], alive=[True, True, True])
    with pytest.raises(IndexStoreError, match="outside the 4 document metadata rows"):
        MetadataFilter().run(make_ctx(counter, filters={"a": 1}, index=index), [])


def test_to_dict_from_dict_round_trip():
    base = {"tenant": "acme", "updated": {"$gte": "2025-01-01"}}
    stage = MetadataFilter(base_filter=base, cache_size=8)
    data = stage.to_dict()
    assert data == {
        "type": "MetadataFilter",
        "init_parameters": {
            "base_filter": {"tenant": "acme", "updated": {"$gte": "2025-01-01"}},
            "cache_size": 8,
        },
    }
    rebuilt = Stage.from_dict(data)
    assert isinstance(rebuilt, MetadataFilter)
    assert rebuilt == stage
    assert hash(rebuilt) == hash(stage)
    assert MetadataFilter.kind == "filter"


def test_bad_base_filter_is_a_config_error_naming_the_field_and_path():
    with pytest.raises(ConfigError) as caught:
        MetadataFilter(base_filter={"$and": [{"tenant": "acme"}, {"updated": {"$gt": None}}]})
    message = str(caught.value)
    assert "MetadataFilter.base_filter" in message
    assert "$and[1].updated.$gt" in message


def test_bad_cache_size_is_a_config_error():
    with pytest.raises(ConfigError, match="MetadataFilter.cache_size"):
        MetadataFilter(cache_size=-1)
