"""The metadata filter language: plain dicts (usable from YAML/JSON), validated up front.

Filters are applied *before* top-k, so every problem is reported when the filter is parsed,
never half-way through a search: each error is a ``FilterError`` whose path points inside the
filter tree (``$and[1].updated.$gt``).

Syntax (Mongo-like)::

    {"product": "x"}                                   equality shorthand ({"$eq": "x"})
    {"product": "x", "lang": "en"}                     several keys in one dict: implicit AND
    {"updated": {"$gte": "2025-01-01", "$lt": "2025-04-01"}}   several operators: AND
    {"$or": [{...}, {...}]}, {"$and": [...]}, {"$not": {...}}  combinators
    {"author.name": "Ada"}                             dotted paths reach nested metadata

Field operators: ``$eq $ne $in $nin $gt $gte $lt $lte $exists $contains``.
``{}`` matches everything.

Semantics, decided once here so every retriever agrees:

* **Missing fields** fail ``$eq $in $gt $gte $lt $lte $contains`` and satisfy ``$ne $nin``
  (``$ne``/``$nin`` are the exact complements of ``$eq``/``$in``). ``{"x": None}`` matches an
  explicit ``None`` only; use ``{"$exists": false}`` for a missing field. ``$exists`` is true
  when the key is present, whatever its value (``None`` included).
* **Lists** (list or tuple metadata values): ``$eq $in`` and the range operators match when ANY
  element matches; ``$ne $nin`` therefore match only when NO element does. An empty list never
  matches ``$eq``.
* **$contains**: substring test on string values, element membership (``$eq`` semantics) on
  list values; anything else (numbers, missing) does not match.
* **Dates**: strings of the form ``YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH[:MM]]`` are dates on
  both sides, in ``$eq``/``$in`` as in ``$gt..``; so do Python ``date``/``datetime`` values. A
  date without time is midnight UTC; a naive datetime is UTC. So ``"2025-03-01"`` equals
  ``"2025-03-01T00:00:00Z"`` and ``{"$gt": "2025-03-01"}`` matches ``"2025-03-01T10:00:00Z"``.
  A filter value that looks like a date but is not a valid one is a parse error.
* **Numbers**: ``int``/``float`` (and numpy numbers) compare numerically (``1 == 1.0``); ``bool``
  is not a number (``True`` does not equal ``1``). NaN/inf filter values are rejected.
* **Incomparable types** (a string against a number, a date against a plain string) simply do
  not match; they never raise at evaluation time. Non-date strings order lexicographically.
* **Strings are literal**: there is no regex operator; ``"^a.*"`` is just that string.
* **Dotted paths** walk nested mappings; through a list of mappings they collect the value of
  every element (``"authors.name"`` on ``{"authors": [{"name": "a"}, {"name": "b"}]}`` is
  ``["a", "b"]``). Keys that themselves contain dots cannot be addressed. A mapping as a field's
  value (``{"author": {"name": "Ada"}}``) is rejected: use the dotted path.

The tree is compiled once into closures. ``Filter.mask`` evaluates it column by column: each
field is read once per call, its distinct values are tested once, and the result is broadcast
back to every row; ISO dates found in metadata are parsed once per call.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np

from ragtrim.errors import FilterError

COMBINATORS = ("$and", "$not", "$or")
#: nesting of combinators a filter may have: deeper trees are an error, not a RecursionError
MAX_FILTER_DEPTH = 32
OPERATORS = ("$contains", "$eq", "$exists", "$gt", "$gte", "$in", "$lt", "$lte", "$ne", "$nin")
_RANGE_OPERATORS = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


class _Missing:
    """The value of a path that a metadata mapping does not have."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

DateCache = dict  # str -> datetime | None, one per evaluation call
ValueTest = Callable[[Any, DateCache], bool]
RowTest = Callable[[Mapping[str, Any], DateCache], bool]
MaskTest = Callable[[Sequence[Mapping[str, Any]], "_Evaluation"], np.ndarray]

# ---------------------------------------------------------------------------------- values

_ISO_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)


def _parse_iso(text: str) -> datetime | None:
    """``None`` when ``text`` does not look like an ISO-8601 date; ValueError when it does but is
    not a real one (``2025-02-30``). The result is always timezone-aware (naive means UTC)."""
    match = _ISO_DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if zone and zone not in "Zz":
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if minutes >= 60:
            raise ValueError(f"UTC offset minutes must be below 60, got {minutes}")
        offset = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-offset if zone[0] == "-" else offset)
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=tz,
    )


def _metadata_date(text: str) -> datetime | None:
    try:
        return _parse_iso(text)
    except ValueError:
        return None


def _as_datetime(value: Any, dates: DateCache) -> datetime | None:
    """A metadata value as an aware datetime, or ``None`` if it is not a date."""
    if isinstance(value, str):
        try:
            return dates[value]
        except KeyError:
            parsed = dates[value] = _metadata_date(value)
            return parsed
    if isinstance(value, datetime):
        return value if value.utcoffset() is not None else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    return None


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is int or kind is float:
        return True
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple))


@dataclass(frozen=True, slots=True)
class _Operand:
    """A validated filter value: ``kind`` is string, date, number, bool or none."""

    kind: str
    value: Any  # the comparable form: str, aware datetime, int/float, bool or None
    canonical: Any  # the JSON form written by ``Filter.to_dict``
    text: str | None = None  # the original string, for substring tests


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if _is_array(value):
        return "a list"
    return f"{value!r} ({type(value).__name__})"


def _operand(value: Any, path: str, role: str) -> _Operand:
    """Validate one single value; ``role`` names what it is for, in error messages."""
    if value is None:
        return _Operand("none", None, None)
    if _is_bool(value):
        return _Operand("bool", bool(value), bool(value))
    if isinstance(value, str):
        try:
            parsed = _parse_iso(value)
        except ValueError as exc:
            message = f"{value!r} looks like an ISO-8601 date but is not valid ({exc})"
            raise FilterError(path, message) from None
        if parsed is not None:
            return _Operand("date", parsed, value, value)
        return _Operand("string", value, value, value)
    if isinstance(value, (datetime, date)):
        return _Operand("date", _as_datetime(value, {}), value.isoformat())
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise FilterError(path, f"{role} must be a finite number, got {value!r}")
        plain = int(value) if isinstance(value, numbers.Integral) else float(value)
        return _Operand("number", plain, plain)
    if isinstance(value, Mapping) or _is_array(value):
        raise FilterError(
            path,
            f"{role} must be a single value, got {_describe(value)}; use $in to match any of "
            "several values, $contains for list membership, and dotted paths for nested fields",
        )
    raise FilterError(
        path,
        f"{role} has unsupported type {type(value).__name__}; use a string, number, boolean, "
        "null or ISO-8601 date",
    )


# ---------------------------------------------------------------------------- value tests


def _membership(operands: Sequence[_Operand]) -> Callable[[Any, DateCache], bool]:
    """Does one scalar metadata value equal any operand (``$eq``/``$in`` semantics)?"""
    strings = frozenset(o.value for o in operands if o.kind == "string")
    dates_wanted = frozenset(o.value for o in operands if o.kind == "date")
    nums = frozenset(o.value for o in operands if o.kind == "number")
    bools = frozenset(o.value for o in operands if o.kind == "bool")
    has_none = any(o.kind == "none" for o in operands)

    def member(element: Any, dates: DateCache) -> bool:
        if element is None:
            return has_none
        if isinstance(element, str):
            if element in strings:
                return True
            if dates_wanted:
                parsed = _as_datetime(element, dates)
                return parsed is not None and parsed in dates_wanted
            return False
        if _is_bool(element):
            return bool(element) in bools
        if isinstance(element, (datetime, date)):
            return bool(dates_wanted) and _as_datetime(element, dates) in dates_wanted
        if _is_number(element):
            return element in nums
        return False

    return member


def _any_element(scalar: Callable[[Any, DateCache], bool]) -> ValueTest:
    """Lift a scalar test to metadata values: missing fails, lists match on any element."""

    def test(value: Any, dates: DateCache) -> bool:
        if value is MISSING:
            return False
        if _is_array(value):
            return any(scalar(element, dates) for element in value)
        return scalar(value, dates)

    return test


def _negate(test: ValueTest) -> ValueTest:
    return lambda value, dates: not test(value, dates)


def _range(compare: Callable[[Any, Any], bool], bound: _Operand) -> ValueTest:
    limit = bound.value
    if bound.kind == "number":

        def scalar(element: Any, dates: DateCache) -> bool:
            return _is_number(element) and compare(element, limit)

    elif bound.kind == "date":

        def scalar(element: Any, dates: DateCache) -> bool:
            parsed = _as_datetime(element, dates)
            return parsed is not None and compare(parsed, limit)

    else:

        def scalar(element: Any, dates: DateCache) -> bool:
            return isinstance(element, str) and compare(element, limit)

    return _any_element(scalar)


def _contains(needle: _Operand) -> ValueTest:
    member = _membership([needle])
    text = needle.text

    def test(value: Any, dates: DateCache) -> bool:
        if isinstance(value, str):
            return text is not None and text in value
        if _is_array(value):
            return any(member(element, dates) for element in value)
        return False

    return test


def _exists(wanted: bool) -> ValueTest:
    return lambda value, dates: (value is not MISSING) is wanted


def _all_of(tests: Sequence[ValueTest]) -> ValueTest:
    if len(tests) == 1:
        return tests[0]

    def test(value: Any, dates: DateCache) -> bool:
        return all(one(value, dates) for one in tests)

    return test


# ---------------------------------------------------------------------------------- paths


def _resolver(path: str) -> Callable[[Mapping[str, Any]], Any]:
    segments = tuple(path.split("."))
    if len(segments) == 1:
        return lambda metadata: metadata.get(path, MISSING)

    def resolve(metadata: Mapping[str, Any]) -> Any:
        return _walk(metadata, segments)

    return resolve


def _walk(value: Any, segments: Sequence[str]) -> Any:
    for position, segment in enumerate(segments):
        if isinstance(value, Mapping):
            value = value.get(segment, MISSING)
            if value is MISSING:
                return MISSING
        elif _is_array(value):
            collected: list[Any] = []
            for element in value:
                found = _walk(element, segments[position:])
                if found is MISSING:
                    continue
                if _is_array(found):
                    collected.extend(found)
                else:
                    collected.append(found)
            return collected if collected else MISSING
        else:
            return MISSING
    return value


# ------------------------------------------------------------------------- column masks

_SAFE_TYPES = frozenset({str, int, float, bool, type(None), _Missing, datetime, date, np.bool_})
_SAFE_TYPES |= {np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64}
_SAFE_TYPES |= {np.float16, np.float32, np.float64}


def _factorisable(types: set[type]) -> bool:
    """Can values be grouped by hash/equality without merging values the tests tell apart?

    ``True == 1 == 1.0`` hash alike but only numbers are numbers, so bools may not share a
    column with numbers; lists are unhashable and tuples could hide the same collision."""
    if not types <= _SAFE_TYPES:
        return False
    has_bool = bool in types or np.bool_ in types
    return not (
        has_bool and any(t not in (bool, np.bool_) and issubclass(t, numbers.Real) for t in types)
    )


def _column_mask(column: list[Any], test: ValueTest, dates: DateCache) -> np.ndarray:
    """``test`` on every value, computed once per distinct value when that is safe."""
    if _factorisable(set(map(type, column))):
        codes_of: dict[Any, int] = {}
        assign = codes_of.setdefault
        codes = np.array([assign(value, len(codes_of)) for value in column], dtype=np.intp)
        outcome = np.fromiter((test(value, dates) for value in codes_of), bool, len(codes_of))
        return outcome[codes]
    return np.fromiter((test(value, dates) for value in column), bool, len(column))


class _Evaluation:
    """Per-call state of ``Filter.mask``: columns read so far and dates parsed so far."""

    __slots__ = ("rows", "columns", "dates")

    def __init__(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows = rows
        self.columns: dict[str, list[Any]] = {}
        self.dates: DateCache = {}

    def column(self, path: str, resolve: Callable[[Mapping[str, Any]], Any]) -> list[Any]:
        found = self.columns.get(path)
        if found is None:
            if "." in path:
                found = [resolve(row) for row in self.rows]
            else:
                found = [row.get(path, MISSING) for row in self.rows]
            self.columns[path] = found
        return found


# ---------------------------------------------------------------------------- tree nodes


@dataclass(frozen=True, slots=True)
class _Node:
    row: RowTest
    mask: MaskTest
    canonical: Any
    paths: frozenset[str]


def _leaf(path: str, test: ValueTest, canonical: Any) -> _Node:
    resolve = _resolver(path)

    def row(metadata: Mapping[str, Any], dates: DateCache) -> bool:
        return test(resolve(metadata), dates)

    def mask(rows: Sequence[Mapping[str, Any]], evaluation: _Evaluation) -> np.ndarray:
        return _column_mask(evaluation.column(path, resolve), test, evaluation.dates)

    return _Node(row, mask, canonical, frozenset({path}))


def _everything(canonical: Any) -> _Node:
    return _Node(
        lambda metadata, dates: True,
        lambda rows, evaluation: np.ones(len(rows), dtype=bool),
        canonical,
        frozenset(),
    )


def _conjunction(children: Sequence[_Node], canonical: Any) -> _Node:
    if not children:
        return _everything(canonical)
    rows_tests = tuple(c.row for c in children)
    mask_tests = tuple(c.mask for c in children)

    def row(metadata: Mapping[str, Any], dates: DateCache) -> bool:
        return all(one(metadata, dates) for one in rows_tests)

    def mask(rows: Sequence[Mapping[str, Any]], evaluation: _Evaluation) -> np.ndarray:
        result = mask_tests[0](rows, evaluation)
        for one in mask_tests[1:]:
            if not result.any():
                break
            np.logical_and(result, one(rows, evaluation), out=result)
        return result

    return _Node(row, mask, canonical, frozenset().union(*(c.paths for c in children)))


def _disjunction(children: Sequence[_Node], canonical: Any) -> _Node:
    rows_tests = tuple(c.row for c in children)
    mask_tests = tuple(c.mask for c in children)

    def row(metadata: Mapping[str, Any], dates: DateCache) -> bool:
        return any(one(metadata, dates) for one in rows_tests)

    def mask(rows: Sequence[Mapping[str, Any]], evaluation: _Evaluation) -> np.ndarray:
        result = mask_tests[0](rows, evaluation)
        for one in mask_tests[1:]:
            if result.all():
                break
            np.logical_or(result, one(rows, evaluation), out=result)
        return result

    return _Node(row, mask, canonical, frozenset().union(*(c.paths for c in children)))


def _negation(child: _Node, canonical: Any) -> _Node:
    inner_row, inner_mask = child.row, child.mask

    def row(metadata: Mapping[str, Any], dates: DateCache) -> bool:
        return not inner_row(metadata, dates)

    def mask(rows: Sequence[Mapping[str, Any]], evaluation: _Evaluation) -> np.ndarray:
        return np.logical_not(inner_mask(rows, evaluation))

    return _Node(row, mask, canonical, child.paths)


# -------------------------------------------------------------------------------- parsing


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _here(path: str) -> str:
    return path or "$"


def _string_keys(spec: Mapping[Any, Any], path: str) -> None:
    for key in spec:
        if not isinstance(key, str):
            raise FilterError(_here(path), f"keys must be strings, got {key!r}")


def _parse_mapping(spec: Any, path: str, depth: int = 0) -> _Node:
    if not isinstance(spec, Mapping):
        raise FilterError(_here(path), f"expected a filter mapping, got {_describe(spec)}")
    if depth > MAX_FILTER_DEPTH:
        raise FilterError(_here(path), f"filter is nested more than {MAX_FILTER_DEPTH} levels deep")
    _string_keys(spec, path)
    children = []
    for key in sorted(spec):
        value = spec[key]
        if key.startswith("$"):
            children.append(_parse_combinator(key, value, path, depth))
        else:
            children.append(_parse_field(key, value, path))
    canonical = {key: node.canonical for key, node in zip(sorted(spec), children, strict=True)}
    if len(children) == 1:
        only = children[0]
        return _Node(only.row, only.mask, canonical, only.paths)
    return _conjunction(children, canonical)


def _parse_combinator(key: str, value: Any, path: str, depth: int) -> _Node:
    here = _join(path, key)
    if key in ("$and", "$or"):
        if not _is_array(value) or not value:
            got = "an empty list" if _is_array(value) else _describe(value)
            raise FilterError(here, f"{key} expects a non-empty list of filters, got {got}")
        children = [_parse_mapping(item, f"{here}[{i}]", depth + 1) for i, item in enumerate(value)]
        canonical = [child.canonical for child in children]
        return (_conjunction if key == "$and" else _disjunction)(children, canonical)
    if key == "$not":
        child = _parse_mapping(value, here, depth + 1)
        return _negation(child, child.canonical)
    if key in OPERATORS:
        raise FilterError(
            here,
            f'operator {key} must be applied to a field, e.g. {{"field": {{"{key}": ...}}}}; '
            f"at filter level only {', '.join(COMBINATORS)} are allowed",
        )
    raise FilterError(
        here,
        f"unknown operator {key!r}; valid combinators: {', '.join(COMBINATORS)}; "
        f"valid field operators: {', '.join(OPERATORS)}",
    )


def _parse_field(name: str, value: Any, path: str) -> _Node:
    if not name:
        raise FilterError(_here(path), "field name must not be empty")
    here = _join(path, name)
    if "" in name.split("."):
        raise FilterError(here, f"field name {name!r} has an empty segment between dots")
    if not isinstance(value, Mapping):
        operand = _operand(value, here, f"value of field {name!r}")
        test = _any_element(_membership([operand]))
        return _leaf(name, test, {"$eq": operand.canonical})
    _string_keys(value, here)
    if not value:
        raise FilterError(
            here, 'empty operator mapping; give a value or operators such as {"$exists": true}'
        )
    plain = [key for key in value if not key.startswith("$")]
    if plain:
        raise FilterError(
            here,
            f"a mapping value is not matched field by field; to reach nested metadata use a "
            f"dotted path such as {name + '.' + plain[0]!r}",
        )
    tests = []
    canonical = {}
    for op in sorted(value):
        operand_canonical, test = _parse_operator(name, op, value[op], _join(here, op))
        canonical[op] = operand_canonical
        tests.append(test)
    return _leaf(name, _all_of(tests), canonical)


def _parse_operator(field: str, op: str, value: Any, here: str) -> tuple[Any, ValueTest]:
    if op in ("$eq", "$ne"):
        operand = _operand(value, here, op)
        test = _any_element(_membership([operand]))
        return operand.canonical, test if op == "$eq" else _negate(test)
    if op in ("$in", "$nin"):
        if not _is_array(value):
            raise FilterError(here, f"{op} expects a list of values, got {_describe(value)}")
        operands = [_operand(item, f"{here}[{i}]", f"{op} value") for i, item in enumerate(value)]
        test = _any_element(_membership(operands))
        canonical = [o.canonical for o in operands]
        return canonical, test if op == "$in" else _negate(test)
    if op in _RANGE_OPERATORS:
        if value is None or _is_bool(value) or _is_array(value) or isinstance(value, Mapping):
            raise FilterError(
                here,
                f"{op} expects a number, a string or an ISO-8601 date, got {_describe(value)}",
            )
        operand = _operand(value, here, op)
        return operand.canonical, _range(_RANGE_OPERATORS[op], operand)
    if op == "$exists":
        if not isinstance(value, bool):
            raise FilterError(here, f"$exists expects true or false, got {_describe(value)}")
        return value, _exists(value)
    if op == "$contains":
        operand = _operand(value, here, op)
        return operand.canonical, _contains(operand)
    if op in COMBINATORS:
        example = (
            f'{{"$not": {{"{field}": ...}}}} (or $ne / $nin)'
            if op == "$not"
            else f'{{"{op}": [{{"{field}": ...}}, {{"{field}": ...}}]}}'
        )
        raise FilterError(
            here, f"{op} combines whole filters and cannot be used inside a field; write {example}"
        )
    raise FilterError(here, f"unknown operator {op!r}; valid operators: {', '.join(OPERATORS)}")


# ---------------------------------------------------------------------------------- API


class Filter:
    """A parsed, compiled filter. Build one with ``parse_filter``; equal canonical forms compare
    (and hash) equal."""

    __slots__ = ("_node", "_json")

    def __init__(self, node: _Node) -> None:
        self._node = node
        self._json = json.dumps(node.canonical, sort_keys=True, separators=(",", ":"))

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        return self._node.row(metadata, {})

    def mask(self, metadatas: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One bool per metadata mapping, equal to ``matches`` row by row, but vectorised."""
        if not len(metadatas):
            return np.zeros(0, dtype=bool)
        return self._node.mask(metadatas, _Evaluation(metadatas))

    @property
    def paths(self) -> frozenset[str]:
        """Every field path the filter reads, as written (``author.name``)."""
        return self._node.paths

    @property
    def fields(self) -> frozenset[str]:
        """The top-level metadata keys the filter reads (``author`` for ``author.name``)."""
        return frozenset(path.split(".", 1)[0] for path in self._node.paths)

    def absent_paths(self, metadatas: Sequence[Mapping[str, Any]]) -> list[str]:
        """Paths no mapping in ``metadatas`` has (usually a typo in the filter), sorted."""
        absent = []
        for path in sorted(self._node.paths):
            resolve = _resolver(path)
            if all(resolve(metadata) is MISSING for metadata in metadatas):
                absent.append(path)
        return absent

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able form: sorted keys, shorthand expanded to ``$eq``, dates as
        ISO strings. ``parse_filter(f.to_dict())`` is equivalent to ``f``."""
        return json.loads(self._json)

    def to_json(self) -> str:
        """Canonical compact JSON, the cache key of this filter."""
        return self._json

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and self._json == other._json

    def __hash__(self) -> int:
        return hash(self._json)

    def __repr__(self) -> str:
        return f"Filter({self._json})"


def parse_filter(spec: Mapping[str, Any] | Filter) -> Filter:
    """Validate and compile a filter; every problem raises ``FilterError(path, message)``."""
    if isinstance(spec, Filter):
        return spec
    return Filter(_parse_mapping(spec, ""))


def combine(*filters: Filter | None) -> Filter | None:
    """AND of the given filters, ignoring ``None``; ``None`` when nothing is left."""
    present = [f for f in filters if f is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    nodes = [f._node for f in present]
    return Filter(_conjunction(nodes, {"$and": [node.canonical for node in nodes]}))
