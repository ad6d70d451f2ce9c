"""Fit the packer's unit scorer on the tune halves of the labelled data sets.

Run from the repository root: ``python benchmarks/fit_unit_scorer.py`` writes the shipped
parameters, ``ragtrim/packing/unit_scorer.json``. The split is ``ragtrim tune``'s (seed 0: each
task type's questions ordered by a seeded hash of their id, first half tune): only tune-half
questions are fitted on, so every figure on the test halves is held apart. ``--exclude NAME``
leaves data sets out (a leave-one-data-set-out scorer, for the generalisation table) and
``--out`` writes elsewhere. ``--no-conditional`` fits on the empty state only, with the
conditional features' weights held at zero (the ablation without conditional scoring).
``--ablations`` also writes, from the same loaded questions, the no-conditional scorer and one
leave-one-out scorer per data set into ``benchmarks/results/scorers/`` (what
``bench_evidence.py`` compares).

PubMedQA is not fitted on: its gold is a document, not sentences or answer spans.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _candidates import candidates_per_query, dataset_halves  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
#: name -> (path, answerable only, limit): the bench's settings for each data set
TRAINING = {
    "kestrel": (REPO / "corpora" / "kestrel", False, None),
    "squad2-dev-half": (SHARED / "squad2-dev-half", True, 600),
    "hotpotqa-dev-300": (SHARED / "hotpotqa-dev-300", False, None),
    "covid-qa": (SHARED / "covid-qa", False, 400),
    "scifact": (SHARED / "scifact", False, None),
}
SEED = 0


def retrieval_config() -> dict:
    """The default pipeline with the hand-set packer: candidates do not depend on the packer,
    and the shipped scorer file may be the one being replaced (or fitted on old features)."""
    from ragtrim.pipeline import DEFAULT_STAGE_TYPES

    return {
        "stages": {
            slot: (stage_type(scorer="hand") if slot == "packer" else stage_type()).to_dict()
            for slot, stage_type in DEFAULT_STAGE_TYPES.items()
        }
    }


def labelled(name: str, half: str = "tune") -> list:
    """The data set's questions of one half (``tune`` or ``test``) as ``LabelledQuery``s."""
    from ragtrim.packing.training import LabelledQuery

    path, answerable_only, limit = TRAINING[name]
    _, tune, test = dataset_halves(path, answerable_only, limit, SEED)
    wanted = {q.id for q in (tune if half == "tune" else test).queries}
    return [
        LabelledQuery(ctx, candidates, query.span_answers, query.gold_sentences, name)
        for query, ctx, candidates in candidates_per_query(
            path, answerable_only, limit, retrieval_config()
        )
        if query.id in wanted
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exclude", action="append", default=[], choices=sorted(TRAINING))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-conditional", action="store_true")
    parser.add_argument("--ablations", action="store_true")
    args = parser.parse_args()

    from ragtrim.packing.scorer import DEFAULT_PATH

    names = [n for n in TRAINING if n not in args.exclude]
    missing = [n for n in names if not TRAINING[n][0].exists()]
    if missing:
        sys.exit(f"fit_unit_scorer: data set(s) not found: {', '.join(missing)}")
    by_name = {name: labelled(name) for name in names}
    fit(by_name, args.exclude, args.no_conditional, args.out or DEFAULT_PATH)
    if args.ablations:
        scorers = REPO / "benchmarks" / "results" / "scorers"
        scorers.mkdir(parents=True, exist_ok=True)
        fit(by_name, args.exclude, True, scorers / "no-conditional.json")
        for name in names:
            kept = {n: q for n, q in by_name.items() if n != name}
            fit(kept, [*args.exclude, name], False, scorers / f"without-{name}.json")


def fit(by_name: dict[str, list], excluded: list[str], no_conditional: bool, out: Path) -> None:
    from ragtrim.packing.scorer import DEFAULT_PATH
    from ragtrim.packing.training import fit_unit_scorer

    command = "python benchmarks/fit_unit_scorer.py" + "".join(f" --exclude {n}" for n in excluded)
    if no_conditional:
        command += " --no-conditional"
    if out != DEFAULT_PATH:
        command += f" --out {out.relative_to(REPO) if out.is_absolute() else out}"
    queries = [q for questions in by_name.values() for q in questions]
    scorer = fit_unit_scorer(
        queries,
        conditional=not no_conditional,
        training={
            "datasets": list(by_name),
            "split": f"ragtrim tune's split_halves, seed {SEED}: the tune half of each",
            "command": command,
        },
    )
    scorer.save(out)
    print(f"fitted on {len(queries)} questions of {', '.join(by_name)}; wrote {out}", flush=True)


if __name__ == "__main__":
    main()
