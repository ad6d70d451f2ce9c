from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrim.errors import FilterError, InputError
from ragtrim.filtering import Filter, combine, parse_filter

DOC = {
    "product": "widget",
    "lang": "en",
    "version": 3,
    "score": 2.5,
    "draft": False,
    "owner": None,
    "tags": ["api", "beta", 7],
    "updated": "2025-03-01T10:00:00Z",
    "published": "2025-01-15",
    "author": {"name": "Ada", "team": {"id": 42}},
    "reviewers": [{"name": "Bob"}, {"name": "Cy", "aliases": ["C", "Cee"]}],
    "title": "Rate limits (v2.*)",
}

# (filter, expected for DOC)
CASES = [
    # equality shorthand and $eq
    ({"product": "widget"}, True),
    ({"product": "gadget"}, False),
    ({"product": {"$eq": "widget"}}, True),
    ({"version": 3.0}, True),
    ({"version": "3"}, False),
    ({"draft": False}, True),
    ({"draft": 0}, False),
    ({"version": True}, False),
    ({"owner": None}, True),
    ({"missing": None}, False),
    ({"missing": "x"}, False),
    # implicit AND of keys and of operators
    ({"product": "widget", "lang": "en"}, True),
    ({"product": "widget", "lang": "de"}, False),
    ({"version": {"$gt": 2, "$lt": 4}}, True),
    ({"version": {"$gt": 2, "$lt": 3}}, False),
    # $ne: exact complement of $eq, missing satisfies it
    ({"product": {"$ne": "widget"}}, False),
    ({"product": {"$ne": "gadget"}}, True),
    ({"missing": {"$ne": "x"}}, True),
    ({"owner": {"$ne": None}}, False),
    ({"tags": {"$ne": "api"}}, False),
    ({"tags": {"$ne": "gamma"}}, True),
    # $in / $nin
    ({"lang": {"$in": ["de", "en"]}}, True),
    ({"lang": {"$in": ["de", "fr"]}}, False),
    ({"lang": {"$in": []}}, False),
    ({"missing": {"$in": ["x", None]}}, False),
    ({"owner": {"$in": ["x", None]}}, True),
    ({"version": {"$in": [1, 3.0]}}, True),
    ({"draft": {"$in": [0, 1]}}, False),
    ({"tags": {"$in": ["beta", "zeta"]}}, True),
    ({"tags": {"$in": [7]}}, True),
    ({"lang": {"$nin": ["de", "fr"]}}, True),
    ({"lang": {"$nin": ["en"]}}, False),
    ({"missing": {"$nin": ["x"]}}, True),
    ({"tags": {"$nin": ["api"]}}, False),
    # lists match $eq on any element
    ({"tags": "beta"}, True),
    ({"tags": "gamma"}, False),
    ({"tags": 7.0}, True),
    # numbers
    ({"version": {"$gt": 2}}, True),
    ({"version": {"$gte": 3}}, True),
    ({"version": {"$gt": 3}}, False),
    ({"version": {"$lte": 3}}, True),
    ({"version": {"$lt": 3}}, False),
    ({"score": {"$gt": 2.4, "$lt": 2.6}}, True),
    ({"draft": {"$lt": 1}}, False),
    ({"tags": {"$gt": 5}}, True),
    ({"tags": {"$gt": 7}}, False),
    ({"missing": {"$lt": 100}}, False),
    # incomparable types never match
    ({"product": {"$gt": 1}}, False),
    ({"version": {"$gt": "1"}}, False),
    ({"version": {"$gt": "2025-01-01"}}, False),
    # strings order lexicographically and are literal
    ({"product": {"$gt": "w"}}, True),
    ({"product": {"$lt": "w"}}, False),
    ({"title": "Rate limits (v2.*)"}, True),
    ({"title": "Rate limits .*"}, False),
    # dates: both sides, in ranges and in equality
    ({"updated": {"$gt": "2025-03-01"}}, True),
    ({"updated": {"$gt": "2025-03-01T10:00:00Z"}}, False),
    ({"updated": {"$gte": "2025-03-01T10:00:00Z"}}, True),
    ({"updated": {"$lt": "2025-03-01T10:00:01"}}, True),
    ({"updated": {"$lt": "2025-03-01T11:00:00+02:00"}}, False),
    ({"updated": {"$lt": "2025-03-01T13:00:00+02:00"}}, True),
    ({"updated": {"$eq": "2025-03-01T12:00:00+02:00"}}, True),
    ({"updated": "2025-03-01T10:00:00.000Z"}, True),
    ({"updated": "2025-03-01"}, False),
    ({"published": "2025-01-15T00:00:00Z"}, True),
    ({"published": {"$in": ["2025-01-15T00:00:00+00:00"]}}, True),
    ({"published": {"$gte": "2025-01-01", "$lt": "2025-02-01"}}, True),
    ({"published": {"$gt": date(2025, 1, 14)}}, True),
    ({"published": {"$lt": datetime(2025, 1, 15, 0, 0, 1)}}, True),
    ({"product": {"$gt": "2020-01-01"}}, False),
    ({"updated": {"$gt": 20250101}}, False),
    # $exists
    ({"owner": {"$exists": True}}, True),
    ({"missing": {"$exists": True}}, False),
    ({"missing": {"$exists": False}}, True),
    ({"author.name": {"$exists": True}}, True),
    ({"author.email": {"$exists": False}}, True),
    # $contains: substring on strings, membership on lists
    ({"title": {"$contains": "limits"}}, True),
    ({"title": {"$contains": "(v2.*)"}}, True),
    ({"title": {"$contains": "LIMITS"}}, False),
    ({"tags": {"$contains": "api"}}, True),
    ({"tags": {"$contains": "ap"}}, False),
    ({"tags": {"$contains": 7}}, True),
    ({"version": {"$contains": 3}}, False),
    ({"missing": {"$contains": "x"}}, False),
    # nested paths (through mappings and lists of mappings)
    ({"author.name": "Ada"}, True),
    ({"author.team.id": {"$gte": 40}}, True),
    ({"author.team.id": "42"}, False),
    ({"author.name.first": "Ada"}, False),
    ({"reviewers.name": "Cy"}, True),
    ({"reviewers.name": {"$in": ["Dee", "Bob"]}}, True),
    ({"reviewers.name": {"$ne": "Bob"}}, False),
    ({"reviewers.aliases": "Cee"}, True),
    ({"reviewers.email": {"$exists": False}}, True),
    # combinators
    ({"$and": [{"product": "widget"}, {"version": 3}]}, True),
    ({"$and": [{"product": "widget"}, {"version": 4}]}, False),
    ({"$or": [{"product": "gadget"}, {"version": 3}]}, True),
    ({"$or": [{"product": "gadget"}, {"version": 4}]}, False),
    ({"$not": {"product": "widget"}}, False),
    ({"$not": {"missing": "x"}}, True),
    ({"$not": {"$or": [{"lang": "de"}, {"lang": "fr"}]}}, True),
    ({"$or": [{"lang": "de"}], "product": "widget"}, False),
    ({"$and": [{"$or": [{"lang": "en"}, {"lang": "de"}]}, {"$not": {"draft": True}}]}, True),
    # the empty filter matches everything
    ({}, True),
    ({"$not": {}}, False),
]


@pytest.mark.parametrize(("spec", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
def test_case_table(spec, expected):
    flt = parse_filter(spec)
    assert flt.matches(DOC) is expected
    assert flt.mask([DOC, {}, DOC]).tolist() == [expected, flt.matches({}), expected]


def test_missing_field_semantics_on_empty_metadata():
    empty = {}
    assert not parse_filter({"a": {"$eq": 1}}).matches(empty)
    assert not parse_filter({"a": {"$in": [1]}}).matches(empty)
    assert not parse_filter({"a": {"$gt": 1}}).matches(empty)
    assert not parse_filter({"a": {"$contains": "x"}}).matches(empty)
    assert parse_filter({"a": {"$ne": 1}}).matches(empty)
    assert parse_filter({"a": {"$nin": [1]}}).matches(empty)


def test_empty_list_value_matches_nothing_but_negations():
    assert not parse_filter({"tags": "a"}).matches({"tags": []})
    assert parse_filter({"tags": {"$ne": "a"}}).matches({"tags": []})
    assert parse_filter({"tags": {"$exists": True}}).matches({"tags": []})


def test_python_date_values_in_metadata_compare_as_dates():
    flt = parse_filter({"updated": {"$gte": "2025-03-01T09:00:00Z"}})
    aware = datetime(2025, 3, 1, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    assert flt.mask(
        [
            {"updated": datetime(2025, 3, 1, 9, 0)},
            {"updated": datetime(2025, 3, 1, 8, 59)},
            {"updated": aware},
            {"updated": date(2025, 3, 2)},
            {"updated": "not a date"},
            {"updated": "2025-02-30"},
        ]
    ).tolist() == [True, False, True, True, False, False]


def test_timezone_offsets_are_instants():
    flt = parse_filter({"t": "2025-03-01T00:00:00Z"})
    rows = [
        {"t": "2025-03-01T01:00:00+01:00"},
        {"t": "2025-02-28T19:00-0500"},
        {"t": "2025-02-28T22:00:00-02"},
        {"t": "2025-03-01 00:00:00"},
        {"t": "2025-03-01T00:00:00+01:00"},
    ]
    assert flt.mask(rows).tolist() == [True, True, True, True, False]


def test_bools_and_numbers_never_merge_in_one_column():
    rows = [{"x": True}, {"x": 1}, {"x": 1.0}, {"x": False}, {"x": 0}, {"x": np.int64(1)}]
    assert parse_filter({"x": 1}).mask(rows).tolist() == [False, True, True, False, False, True]
    only_true = [True, False, False, False, False, False]
    assert parse_filter({"x": True}).mask(rows).tolist() == only_true
    assert parse_filter({"x": {"$gte": 0}}).mask(rows).tolist() == [
        False,
        True,
        True,
        False,
        True,
        True,
    ]


def test_nan_in_metadata_matches_no_comparison():
    rows = [{"x": float("nan")}]
    for spec in ({"x": {"$gt": 0}}, {"x": {"$lte": 0}}, {"x": 0}, {"x": {"$in": [0, 1]}}):
        assert parse_filter(spec).mask(rows).tolist() == [False]
    assert parse_filter({"x": {"$ne": 0}}).mask(rows).tolist() == [True]


def test_mask_of_nothing_is_empty():
    result = parse_filter({"a": 1}).mask([])
    assert result.dtype == bool
    assert result.shape == (0,)


def test_fields_and_paths():
    flt = parse_filter(
        {"$or": [{"author.name": "Ada"}, {"$not": {"lang": "de"}}], "author.team.id": 1}
    )
    assert flt.fields == frozenset({"author", "lang"})
    assert flt.paths == frozenset({"author.name", "author.team.id", "lang"})


def test_absent_paths_lists_paths_no_row_has():
    flt = parse_filter({"$or": [{"author.name": "Ada"}, {"langauge": "de"}, {"lang": "en"}]})
    rows = [{"lang": "en"}, {"author": {"name": "x"}}]
    assert flt.absent_paths(rows) == ["langauge"]


def test_to_dict_is_canonical_and_round_trips():
    flt = parse_filter(
        {
            "lang": "en",
            "$or": [{"version": {"$lt": 3, "$gte": 1}}, {"published": date(2025, 1, 1)}],
            "tags": {"$nin": ["x", None]},
        }
    )
    canonical = {
        "$or": [{"version": {"$gte": 1, "$lt": 3}}, {"published": {"$eq": "2025-01-01"}}],
        "lang": {"$eq": "en"},
        "tags": {"$nin": ["x", None]},
    }
    assert flt.to_dict() == canonical
    assert list(flt.to_dict()) == ["$or", "lang", "tags"]
    again = parse_filter(flt.to_dict())
    assert again == flt
    assert hash(again) == hash(flt)
    assert again.to_json() == flt.to_json()
    assert parse_filter({"lang": {"$eq": "en"}}) == parse_filter({"lang": "en"})


def test_combine_ands_and_ignores_none():
    a = parse_filter({"tenant": "t1"})
    b = parse_filter({"lang": "en"})
    assert combine() is None
    assert combine(None, None) is None
    assert combine(None, a) is a
    both = combine(a, None, b)
    assert both.to_dict() == {"$and": [{"tenant": {"$eq": "t1"}}, {"lang": {"$eq": "en"}}]}
    rows = [{"tenant": "t1", "lang": "en"}, {"tenant": "t2", "lang": "en"}, {"tenant": "t1"}]
    assert both.mask(rows).tolist() == [True, False, False]
    assert both.fields == frozenset({"tenant", "lang"})


def test_parse_filter_accepts_a_filter():
    flt = parse_filter({"a": 1})
    assert parse_filter(flt) is flt
    assert isinstance(flt, Filter)


# (spec, path, fragment of the message)
PARSE_ERRORS = [
    (["a"], "$", "expected a filter mapping, got a list"),
    ("product", "$", "expected a filter mapping"),
    ({"$and": [{}, {"updated": {"$gt": [1]}}]}, "$and[1].updated.$gt", "got a list"),
    ({"x": {"$foo": 1}}, "x.$foo", "valid operators: $contains, $eq, $exists, $gt, $gte, $in"),
    ({"$foo": 1}, "$foo", "unknown operator '$foo'; valid combinators: $and, $not, $or"),
    ({"$gt": 1}, "$gt", "operator $gt must be applied to a field"),
    ({"$or": [{"a": 1}, {"$in": [1]}]}, "$or[1].$in", "must be applied to a field"),
    ({"$and": {"a": 1}}, "$and", "$and expects a non-empty list of filters, got a mapping"),
    ({"$or": []}, "$or", "$or expects a non-empty list of filters, got an empty list"),
    ({"$or": "a"}, "$or", "non-empty list of filters"),
    ({"$and": [{"a": 1}, "b"]}, "$and[1]", "expected a filter mapping"),
    ({"$not": [{"a": 1}]}, "$not", "expected a filter mapping, got a list"),
    ({"$not": {"a": {"$in": 3}}}, "$not.a.$in", "$in expects a list of values, got 3 (int)"),
    ({"a": {"$nin": "abc"}}, "a.$nin", "$nin expects a list of values"),
    ({"a": {"$in": [1, [2]]}}, "a.$in[1]", "must be a single value"),
    ({"a": {"$exists": 1}}, "a.$exists", "$exists expects true or false, got 1 (int)"),
    ({"a": {"$exists": "yes"}}, "a.$exists", "$exists expects true or false"),
    ({"a": {"$gt": [1]}}, "a.$gt", "$gt expects a number, a string or an ISO-8601 date"),
    ({"a": {"$gte": {"b": 1}}}, "a.$gte", "got a mapping"),
    ({"a": {"$lt": True}}, "a.$lt", "got True (bool)"),
    ({"a": {"$lte": None}}, "a.$lte", "got None"),
    ({"a": float("nan")}, "a", "must be a finite number, got nan"),
    ({"a": {"$gt": float("inf")}}, "a.$gt", "must be a finite number, got inf"),
    ({"a": {"$in": [1, float("-inf")]}}, "a.$in[1]", "finite number"),
    ({1: "a"}, "$", "keys must be strings, got 1"),
    ({"a": {1: 2}}, "a", "keys must be strings, got 1"),
    ({"": 1}, "$", "field name must not be empty"),
    ({"$and": [{"": 1}]}, "$and[0]", "field name must not be empty"),
    ({"a..b": 1}, "a..b", "empty segment"),
    ({"a.": 1}, "a.", "empty segment"),
    ({"author": {"name": "Ada"}}, "author", "dotted path such as 'author.name'"),
    ({"a": {"$eq": 1, "b": 2}}, "a", "dotted path such as 'a.b'"),
    ({"a": {}}, "a", "empty operator mapping"),
    ({"a": ["x", "y"]}, "a", "use $in to match any of several values"),
    ({"a": {"$eq": ["x"]}}, "a.$eq", "$eq must be a single value"),
    ({"a": {"$contains": ["x"]}}, "a.$contains", "$contains must be a single value"),
    ({"a": {"$ne": b"x"}}, "a.$ne", "unsupported type bytes"),
    ({"a": {"$or": [1]}}, "a.$or", "cannot be used inside a field"),
    ({"a": {"$not": {"$eq": 1}}}, "a.$not", "$ne / $nin"),
    ({"a": "2025-02-30"}, "a", "'2025-02-30' looks like an ISO-8601 date but is not valid"),
    ({"a": {"$gt": "2025-03-01T25:00"}}, "a.$gt", "not valid"),
    ({"a": {"$gt": "2025-03-01T10:00+05:75"}}, "a.$gt", "not valid"),
    (
        {"$and": [{"x": 1}, {"$or": [{"y": 1}, {"z": {"$in": [{}]}}]}]},
        "$and[1].$or[1].z.$in[0]",
        "$in value must be a single value, got a mapping",
    ),
]


@pytest.mark.parametrize(
    ("spec", "path", "fragment"), PARSE_ERRORS, ids=[e[1] + " " + e[2] for e in PARSE_ERRORS]
)
def test_parse_errors_name_the_path(spec, path, fragment):
    with pytest.raises(FilterError) as caught:
        parse_filter(spec)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"filter {path}: ")
    assert fragment in str(caught.value)
    assert isinstance(caught.value, InputError)


def test_regex_looking_strings_are_literals():
    flt = parse_filter({"id": {"$in": ["^doc-.*$", "a|b"]}})
    assert flt.mask([{"id": "^doc-.*$"}, {"id": "doc-1"}, {"id": "a"}]).tolist() == [
        True,
        False,
        False,
    ]


# ------------------------------------------------------------------ properties

SCALARS = st.sampled_from(
    [
        "x",
        "y",
        "xy",
        "2025-03-01",
        "2025-03-01T00:00:00Z",
        "2025-03-02T12:00:00+02:00",
        0,
        1,
        1.0,
        2.5,
        -3,
        True,
        False,
        None,
    ]
)
ORDERED = st.sampled_from(["x", "y", "2025-03-01", "2025-03-01T06:00:00Z", 0, 1, 2.5, -3])
FIELDS = st.sampled_from(["a", "b", "tags", "n.v", "n.w"])
LEAF_VALUE = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.builds(lambda v: {"v": v}, SCALARS),
    st.lists(st.builds(lambda v: {"v": v}, SCALARS), max_size=2),
)


def _operator_clause():
    return st.one_of(
        SCALARS,
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$eq", "$ne", "$contains"]), SCALARS),
        st.builds(
            lambda op, v: {op: v},
            st.sampled_from(["$in", "$nin"]),
            st.lists(SCALARS, max_size=3),
        ),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ORDERED),
        st.builds(lambda v: {"$exists": v}, st.booleans()),
    )


LEAF = st.builds(lambda field, clause: {field: clause}, FIELDS, _operator_clause())
FILTERS = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.builds(lambda items: {"$and": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"$or": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"$not": item}, inner),
    ),
    max_leaves=6,
)
ROWS = st.lists(
    st.dictionaries(st.sampled_from(["a", "b", "tags", "n"]), LEAF_VALUE, max_size=4),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(FILTERS, ROWS)
def test_mask_agrees_with_matches_row_by_row(spec, rows):
    flt = parse_filter(spec)
    assert flt.mask(rows).tolist() == [flt.matches(row) for row in rows]


@settings(max_examples=200, deadline=None)
@given(FILTERS, ROWS)
def test_not_is_the_exact_complement(spec, rows):
    flt = parse_filter(spec)
    negated = parse_filter({"$not": spec})
    assert (negated.mask(rows) == ~flt.mask(rows)).all()
    assert [negated.matches(r) for r in rows] == [not flt.matches(r) for r in rows]


@settings(max_examples=150, deadline=None)
@given(FILTERS, ROWS)
def test_canonical_form_round_trips_with_same_behaviour(spec, rows):
    flt = parse_filter(spec)
    again = parse_filter(flt.to_dict())
    assert again.to_dict() == flt.to_dict()
    assert again.mask(rows).tolist() == flt.mask(rows).tolist()
