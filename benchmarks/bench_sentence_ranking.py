"""How well the packer ranks sentences: where the answer-bearing sentence lands, per ranker.

Run from the repository root: ``python benchmarks/bench_sentence_ranking.py``. Writes
``benchmarks/results/sentence_ranking.json`` and ``.md``.

The packer's tokens-vs-recall curve is bounded by its sentence ranking: a context of N tokens
carries the answer only if the answer-bearing sentence is among the best-ranked N tokens. This
benchmark takes the default pipeline's candidates for every answerable question, builds the
packer's units, ranks them by each scoring variant, and reports where the first unit containing
a gold answer lands: ranked first, in the top 3, and within the first 100/150/200/300 tokens of
the ranking (the recall a fill-in-rank-order context of that size would have). Questions whose
answer lies in no single unit count as misses. The oracle puts the answer-bearing unit first:
the ceiling for any ranker over the same candidates.

Variants (the packer's default mixes 0.35 dense + 0.35 lexical + 0.3 chunk score):
- ``dense only``, ``lexical only``, ``chunk score only``: one signal each;
- ``contextual dense``: sentence vectors embedded as "title > section: sentence", like the
  chunk vectors, instead of the bare sentence;
- ``answer-type boost``: +0.06 to units with a digit when the question asks for a quantity,
  a time or a limit (classic factoid answer-type matching).

Data sets: the bundled corpus, and SQuAD 2.0 (600 answerable) and COVID-QA (400) from
``../shared/datasets`` when present (skipped with a message otherwise).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from _candidates import candidates_per_query  # noqa: E402
from _provenance import environment, footer, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
RESULTS = REPO / "benchmarks" / "results"
DATASETS = (
    ("bundled corpus", REPO / "corpora" / "kestrel", None),
    ("SQuAD 2.0 dev, answerable", SHARED / "squad2-dev-half", 600),
    ("COVID-QA", SHARED / "covid-qa", 400),
)
FILL_TOKENS = (100, 150, 200, 300)
NUMERIC_QUESTION = re.compile(
    r"\b(how (many|much|long|often|big|large|old|far|fast|soon)|what (year|percentage|percent|"
    r"size|port|number|version)|when|which year|maximum|minimum|biggest|largest|smallest|"
    r"at least|at most|limit|timeout)\b",
    re.IGNORECASE,
)
ANSWER_TYPE_BOOST = 0.06
DEFAULT_WEIGHTS = (0.35, 0.35, 0.3)


@dataclass
class Question:
    """One answerable question's packer units and their per-signal scores."""

    costs: np.ndarray
    label: np.ndarray
    answer: np.ndarray
    dense: np.ndarray
    contextual_dense: np.ndarray
    lexical: np.ndarray
    chunk: np.ndarray
    digits: np.ndarray
    numeric_question: bool


def _headed_sentence_vectors(ctx_class):
    """A query context whose sentence vectors embed each sentence under its title and section
    path (embedded on demand; the embedding cache keeps them for the next run)."""

    class HeadedSentences(ctx_class):
        def sentence_vectors(self, chunk):
            head = " > ".join(h for h in (chunk.title, " > ".join(chunk.section)) if h)
            texts = [chunk.text[a:b] for a, b in chunk.sentences]
            if head:
                texts = [f"{head}: {text}" for text in texts]
            return self._require_embedder().embed(texts)

    return HeadedSentences


def questions_of(path: Path, limit: int | None) -> list[Question]:
    from ragtrim.bench.metrics import answer_recall
    from ragtrim.packing.features import base_features
    from ragtrim.packing.units import build_units
    from ragtrim.query import QueryContext

    headed = _headed_sentence_vectors(QueryContext)
    out = []
    for query, ctx, candidates in candidates_per_query(path, answerable_only=True, limit=limit):
        unitset = build_units(ctx, candidates, "sentence", True, True)
        units = unitset.units
        features = base_features(ctx, unitset, candidates, "sentence", 0.5)
        scores = {
            "dense": features.dense,
            "lexical": features.lexical,
            "chunk": features.chunk_prior,
        }
        fields = (ctx.query, ctx.counter, ctx.task_type, ctx.filters, ctx.index, ctx.embedder)
        contextual = base_features(
            headed(*fields),
            build_units(headed(*fields), candidates, "sentence", True, False),
            candidates,
            "sentence",
            0.5,
            with_lexical=False,
        )
        out.append(
            Question(
                costs=np.array([u.cost for u in units]),
                label=np.array([u.label for u in units], dtype=bool),
                answer=np.array(
                    [bool(answer_recall(u.text, query.span_answers)) for u in units], dtype=bool
                ),
                contextual_dense=contextual.dense,
                digits=np.array([any(ch.isdigit() for ch in u.text) for u in units], dtype=bool),
                numeric_question=bool(NUMERIC_QUESTION.search(query.question)),
                **scores,
            )
        )
    return out


def _mix(q: Question, dense: np.ndarray | None = None) -> np.ndarray:
    wd, wl, wc = DEFAULT_WEIGHTS
    return wd * (q.dense if dense is None else dense) + wl * q.lexical + wc * q.chunk


RANKERS = {
    "packer default (0.35 dense + 0.35 lexical + 0.3 chunk)": _mix,
    "dense only": lambda q: q.dense,
    "lexical only": lambda q: q.lexical,
    "chunk score only": lambda q: q.chunk,
    "contextual dense (title > section: sentence)": lambda q: _mix(q, q.contextual_dense),
    "answer-type boost (+0.06 digits, numeric questions)": lambda q: (
        _mix(q) + ANSWER_TYPE_BOOST * (q.digits & q.numeric_question)
    ),
    "oracle (answer-bearing unit first)": lambda q: _mix(q) + 10.0 * q.answer,
}


def measure(questions: list[Question], ranker) -> dict[str, float]:
    first, top3 = 0, 0
    within = dict.fromkeys(FILL_TOKENS, 0)
    for q in questions:
        if not q.answer.any():
            continue
        order = np.argsort(-np.where(q.label, -np.inf, ranker(q)), kind="stable")
        rank = int(np.argmax(q.answer[order]))
        tokens = int(q.costs[order][: rank + 1].sum())
        first += rank == 0
        top3 += rank < 3
        for budget in FILL_TOKENS:
            within[budget] += tokens <= budget
    n = len(questions)
    return {
        "ranked_first": first / n,
        "in_top_3": top3 / n,
        **{f"within_{b}_tokens": within[b] / n for b in FILL_TOKENS},
    }


def main() -> None:
    results = {}
    for name, path, limit in DATASETS:
        if not path.exists():
            print(f"skipping {name}: {path} not found")
            continue
        questions = questions_of(path, limit)
        results[name] = {
            "questions": len(questions),
            "answer_in_no_single_unit": sum(not q.answer.any() for q in questions),
            "numeric_questions": sum(q.numeric_question for q in questions),
            "rankers": {label: measure(questions, ranker) for label, ranker in RANKERS.items()},
        }
        print(f"{name}: {len(questions)} questions")
    result = {
        "datasets": results,
        "environment": environment(numpy=np.__version__),
    }
    path = write_results(RESULTS, "sentence_ranking", result, render)
    print(render(result))
    print(f"wrote {path}")


def render(result: dict) -> str:
    lines = [
        "# Sentence ranking: where the answer-bearing sentence lands",
        "",
        "Default pipeline candidates, the packer's units, answerable questions. `first` and "
        "`top 3`: the first unit containing a gold answer is ranked first / in the top 3. "
        "`≤ N tok`: it lies within the first N tokens of the ranking (the recall of a context "
        "filled in rank order up to N tokens). Generated by "
        "`python benchmarks/bench_sentence_ranking.py`.",
        "",
    ]
    for name, data in result["datasets"].items():
        lines += [
            f"## {name}",
            "",
            f"{data['questions']} questions; {data['answer_in_no_single_unit']} with the answer "
            f"in no single unit (misses for every ranker); {data['numeric_questions']} ask for "
            "a quantity, time or limit.",
            "",
            "| ranker | first | top 3 | " + " | ".join(f"≤ {b} tok" for b in FILL_TOKENS) + " |",
            "|---" * (3 + len(FILL_TOKENS)) + "|",
        ]
        for label, m in data["rankers"].items():
            within = [m[f"within_{b}_tokens"] for b in FILL_TOKENS]
            cells = [m["ranked_first"], m["in_top_3"], *within]
            lines.append(f"| {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
        lines.append("")
    lines += footer(result["environment"], "numpy")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
