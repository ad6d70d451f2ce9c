"""Rendering chosen units as numbered passages, and the naive top-k context it replaces.

Per document, the chosen units come out in document order; overlapping units and units
separated only by whitespace merge (with the document's own whitespace, so every span in the
source map is verbatim document text) and real gaps get an ellipsis. One ``[n]`` passage per
document, best document first (or in document order, or best at both edges).
"""

from __future__ import annotations

from ragtrim.packing.templates import ReservedLines, header_field, neutralise_lines
from ragtrim.packing.units import Unit
from ragtrim.types import Candidate, Passage, Span

ELLIPSIS = " … "


def header(template: str, number: int, doc_id: str, title: str) -> str:
    title, doc_id = header_field(title), header_field(doc_id)  # one line each
    return template.format(n=number, source=title or doc_id, title=title, doc_id=doc_id)


def render_passages(
    units: list[Unit],
    chosen: list[int],
    candidates: list[Candidate],
    header_template: str,
    ordering: str,
    reserved: ReservedLines,
) -> tuple[str, list[Passage]]:
    """The context and its source map; a line of document text that would start like a
    reserved line (a passage header, ``Question:``) is quoted in the context only, so
    ``Passage.text`` and its spans stay the document's verbatim text."""
    groups: dict[str, list[Unit]] = {}
    for i in chosen:
        groups.setdefault(units[i].doc_id, []).append(units[i])
    ranked = sorted(groups.values(), key=lambda g: -max(u.value for u in g))
    if ordering == "document":
        ranked = sorted(ranked, key=lambda g: (g[0].doc_id, min(u.start for u in g)))
    elif ordering == "edges":
        ranked = ranked[0::2] + ranked[1::2][::-1]
    blocks, passages = [], []
    for number, group in enumerate(ranked, start=1):
        text, spans = join_spans(sorted(group, key=lambda u: (u.start, -u.end)))
        head = header(header_template, number, group[0].doc_id, group[0].title)
        blocks.append(f"{head}\n{neutralise_lines(text, reserved)}")
        chunk_ids = tuple(dict.fromkeys(candidates[u.candidate].id for u in group))
        passages.append(
            Passage(
                number,
                group[0].doc_id,
                group[0].title,
                text,
                tuple(spans),
                max(u.value for u in group),
                chunk_ids,
            )
        )
    return "\n\n".join(blocks), passages


def render_naive(candidates: list[Candidate], header_template: str, reserved: ReservedLines) -> str:
    """Whole chunks, one passage each, in rank order: what plain top-k concatenation sends."""
    return "\n\n".join(
        f"{header(header_template, n, c.chunk.doc_id, c.chunk.title)}\n"
        f"{neutralise_lines(c.chunk.text, reserved)}"
        for n, c in enumerate(candidates, start=1)
    )


def join_spans(units: list[Unit]) -> tuple[str, list[Span]]:
    """Document-ordered text of one document's units: contained units vanish, overlapping
    units and units separated only by whitespace merge; real gaps get an ellipsis."""
    parts: list[str] = []
    spans: list[list[int]] = []
    for unit in units:
        if spans and unit.end <= spans[-1][1]:
            continue
        gap = unit.start - spans[-1][1] if spans else None
        if gap is not None and (gap <= 0 or gap == len(unit.lead)):
            parts.append(unit.text[-gap:] if gap < 0 else unit.lead + unit.text)
            spans[-1][1] = unit.end
            continue
        if parts:
            parts.append(ELLIPSIS)
        parts.append(unit.text)
        spans.append([unit.start, unit.end])
    return "".join(parts), [(a, b) for a, b in spans]
