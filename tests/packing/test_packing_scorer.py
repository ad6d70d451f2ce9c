"""The learned unit scorer: its parameter file (plain JSON, validated, never unpickled), the
shipped parameters, deterministic refitting, and the evidence-aware selection it drives."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fakes import HashingEmbedder

from ragtrim.chunking.sentences import split_sentences
from ragtrim.errors import ConfigError
from ragtrim.packing.features import (
    BASE_FEATURES,
    CONDITIONAL_FEATURES,
    FEATURES,
    EvidenceState,
    base_features,
)
from ragtrim.packing.packer import ContextPacker
from ragtrim.packing.scorer import DEFAULT_PATH, UnitScorer, load_scorer
from ragtrim.packing.selection import sequential_select
from ragtrim.packing.training import LabelledQuery, fit_unit_scorer
from ragtrim.packing.units import build_units
from ragtrim.query import QueryContext
from ragtrim.tokens import get_counter
from ragtrim.types import Candidate, Chunk, chunk_id

COUNTER = get_counter()
EMBEDDER = HashingEmbedder()


def candidate(doc_id: str, text: str, score: float, title: str) -> Candidate:
    sentences = tuple(split_sentences(text))
    chunk = Chunk(
        chunk_id(doc_id, 0, len(text)),
        doc_id,
        text,
        0,
        len(text),
        COUNTER.count(text),
        {"title": title},
        (),
        sentences,
    )
    return Candidate(chunk, score, {"fused": score})


BRIDGE_QUESTION = "In which country was the composer of the opera Lumen born?"
LUMEN = candidate(
    "lumen",
    "Lumen is a chamber opera from 1998. The opera Lumen was written by Ada Varga. "
    "It premiered in a small hall.",
    1.0,
    "Lumen (opera)",
)
VARGA = candidate(
    "varga",
    "Ada Varga is a composer of choral music. Varga was born in Hungary in 1961. "
    "She studied the violin.",
    0.4,
    "Ada Varga",
)
OTHER = candidate(
    "other",
    "The opera house in Lumen county was built in 1901. Opera seasons there last a month.",
    0.8,
    "Lumen County Opera House",
)


def context(question: str = BRIDGE_QUESTION) -> QueryContext:
    return QueryContext(question, COUNTER, embedder=EMBEDDER)


def shipped() -> dict:
    return json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))


def test_shipped_parameters_load_and_record_how_they_were_fitted():
    scorer = load_scorer()
    assert scorer.features == FEATURES
    training = scorer.training
    assert training["command"].startswith("python benchmarks/fit_unit_scorer.py")
    assert "tune half" in training["split"]
    assert training["questions"] > 500 and training["needed"] > 0


def test_parameter_file_round_trips(tmp_path):
    path = tmp_path / "scorer.json"
    load_scorer().save(path)
    again = UnitScorer.load(path)
    matrix = np.random.default_rng(0).random((5, len(FEATURES)))
    assert np.array_equal(again.probabilities(matrix), load_scorer().probabilities(matrix))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="other"), "not a ragtrim unit-scorer file"),
        (lambda d: d.update(version=99), "version 99 is not supported"),
        (lambda d: d["features"].reverse(), "fitted on other features"),
        (lambda d: d["weights"].pop(), "'weights' must be a list of"),
        (lambda d: d["mean"].__setitem__(0, "x"), "'mean' must hold numbers only"),
        (lambda d: d["scale"].__setitem__(0, 0.0), "'scale' must be positive"),
        (lambda d: d.update(bias=float("nan")), "'bias' must be a finite number"),
        (lambda d: d.update(training=[]), "'training' must be an object"),
    ],
)
def test_mismatched_parameter_file_is_a_clear_error(tmp_path, edit, message):
    data = shipped()
    edit(data)
    path = tmp_path / "scorer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as caught:
        UnitScorer.load(path)
    assert str(path) in str(caught.value)


def test_corrupt_parameter_file_is_a_clear_error_and_never_unpickled(tmp_path):
    import pickle

    path = tmp_path / "scorer.json"
    path.write_bytes(pickle.dumps({"format": "ragtrim-unit-scorer"}))
    with pytest.raises(ConfigError, match=re.escape(f"unit scorer {path}")):
        UnitScorer.load(path)
    path.write_text(shipped().__repr__()[:100], encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid JSON"):
        UnitScorer.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        UnitScorer.load(tmp_path / "absent.json")


def test_packer_with_a_bad_scorer_file_fails_at_construction(tmp_path):
    path = tmp_path / "scorer.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a ragtrim unit-scorer file"):
        ContextPacker(scorer_path=str(path))


def test_feature_matrix_has_one_named_column_per_feature():
    ctx = context()
    candidates = [LUMEN, VARGA, OTHER]
    units = build_units(ctx, candidates, "sentence", True, True)
    features = base_features(ctx, units, candidates, "sentence", 0.5)
    state = EvidenceState(ctx, units, candidates)
    assert features.matrix.shape == (len(units), len(BASE_FEATURES))
    assert state.features.shape == (len(units), len(CONDITIONAL_FEATURES))
    assert np.all(np.isfinite(features.matrix))


def test_chosen_evidence_makes_its_bridge_entity_relevant():
    """After the sentence naming Ada Varga is chosen, the sentences of the document titled
    "Ada Varga" gain the title bridge; an unrelated document does not."""
    ctx = context()
    candidates = [LUMEN, VARGA, OTHER]
    units = build_units(ctx, candidates, "sentence", True, True)
    state = EvidenceState(ctx, units, candidates)
    names = list(CONDITIONAL_FEATURES)
    written_by = next(i for i, u in enumerate(units.units) if "written by" in u.text)
    born = next(i for i, u in enumerate(units.units) if "born in Hungary" in u.text)
    house = next(i for i, u in enumerate(units.units) if "built in 1901" in u.text)
    state.add(written_by)
    after = state.features
    bridge, title = names.index("bridge"), names.index("title_bridge")
    assert after[born, title] == 1.0 and after[born, bridge] > 0
    assert after[house, title] == 0 and after[house, bridge] < after[born, bridge]


def test_marginal_coverage_drops_for_terms_already_covered():
    ctx = context("Which opera did Ada Varga write?")
    candidates = [LUMEN, VARGA]
    units = build_units(ctx, candidates, "sentence", True, True)
    state = EvidenceState(ctx, units, candidates)
    column = list(CONDITIONAL_FEATURES).index("marginal_lexical")
    written_by = next(i for i, u in enumerate(units.units) if "written by" in u.text)
    composer = next(i for i, u in enumerate(units.units) if "composer of choral" in u.text)
    before = state.features[composer, column]
    state.add(written_by)
    assert state.features[composer, column] < before


def test_sequential_selection_stops_when_the_rest_is_unlikely_to_be_needed():
    probabilities = np.array([0.9, 0.2, 0.6, 0.01])
    chosen, stop = sequential_select(
        lambda: probabilities, lambda i: None, np.array([5, 5, 5, 5]), 100, np.ones(4, bool), 0.3
    )
    assert chosen == [0, 2] and stop == "sufficient"


def test_sequential_selection_always_takes_a_first_unit_and_respects_capacity():
    probabilities = np.array([0.01, 0.02])
    chosen, stop = sequential_select(
        lambda: probabilities, lambda i: None, np.array([5, 5]), 20, np.ones(2, bool), 0.5
    )
    assert chosen == [1] and stop == "sufficient"
    chosen, stop = sequential_select(
        lambda: probabilities, lambda i: None, np.array([50, 5]), 20, np.ones(2, bool), 0.0
    )
    assert chosen == [1] and stop == "budget"
    chosen, stop = sequential_select(
        lambda: probabilities, lambda i: None, np.array([50, 50]), 20, np.ones(2, bool), 0.0
    )
    assert chosen == [] and stop == "budget"


def test_sequential_selection_rescores_after_every_choice():
    scores = np.array([0.9, 0.5, 0.4])
    seen = []

    def choose(i: int) -> None:
        seen.append(i)
        if i == 0:
            scores[2] = 0.95  # the bridge: unit 2 completes the chain

    chosen, _ = sequential_select(
        lambda: scores.copy(), choose, np.array([1, 1, 1]), 2, np.ones(3, bool), 0.0
    )
    assert chosen == [0, 2] == seen


def test_cost_weighting_never_stops_while_a_likely_unit_fits():
    """By probability / tokens**0.5 a cheap unlikely unit may rank first; the stop must still
    look at every unit that is likely enough."""
    probabilities = np.array([0.9, 0.15, 0.019])
    chosen, stop = sequential_select(
        lambda: probabilities,
        lambda i: None,
        np.array([10, 100, 1]),
        1000,
        np.ones(3, bool),
        0.02,
        cost_exponent=0.5,
    )
    assert chosen == [0, 1] and stop == "sufficient"


def test_packer_features_are_the_training_features():
    """The first probabilities the packer computes are the scorer applied to the features the
    fitting code builds for the same question: training and packing cannot drift apart."""
    from ragtrim.packing.training import _prepare

    question = _labelled()[0]
    item = _prepare(question)
    state = EvidenceState(question.ctx, item.unitset, question.candidates)
    expected = load_scorer().probabilities(np.hstack([item.base, state.features]))
    result = ContextPacker(max_units=1, span_fill=0).run(context(), [LUMEN, VARGA, OTHER])
    best = int(np.argmax(np.where(item.selectable, expected / item.costs**0.25, -np.inf)))
    assert result.passages[0].text == item.unitset.units[best].text


def _labelled() -> list[LabelledQuery]:
    return [
        LabelledQuery(
            context(),
            [LUMEN, VARGA, OTHER],
            answers=("Hungary",),
            gold_sentences=("The opera Lumen was written by Ada Varga.",),
            group="tiny",
        ),
        LabelledQuery(
            context("When was the Lumen county opera house built?"),
            [OTHER, LUMEN],
            answers=("1901",),
            group="tiny",
        ),
    ]


def test_refitting_on_a_tiny_labelled_set_is_deterministic():
    first = fit_unit_scorer(_labelled(), rounds=1, steps=2)
    second = fit_unit_scorer(_labelled(), rounds=1, steps=2)
    assert first.to_dict() == second.to_dict()
    assert first.training["questions"] == 2 and first.training["needed"] >= 2


def test_fitted_scorer_ranks_the_needed_sentences_first():
    scorer = fit_unit_scorer(_labelled(), rounds=1, steps=2, negative_share=1.0, l2=0.1)
    ctx = context("When was the Lumen county opera house built?")
    candidates = [OTHER, LUMEN]
    units = build_units(ctx, candidates, "sentence", True, True)
    features = base_features(ctx, units, candidates, "sentence", 0.5)
    state = EvidenceState(ctx, units, candidates)
    p = scorer.probabilities(np.hstack([features.matrix, state.features]))
    assert "1901" in units.units[int(np.argmax(p))].text


def test_without_conditional_features_their_weights_stay_zero():
    scorer = fit_unit_scorer(_labelled(), conditional=False)
    conditional = [FEATURES.index(name) for name in CONDITIONAL_FEATURES]
    assert np.all(scorer.weights[conditional] == 0)
    assert scorer.training["conditional"] is False


def test_learned_packer_reports_why_it_stopped():
    candidates = [LUMEN, VARGA, OTHER]
    result = ContextPacker(min_probability=1.0, span_fill=0).run(context(), candidates)
    assert result.stats["stop"] == "sufficient" and result.stats["selected"] == 1
    total = sum(c.chunk.token_count for c in candidates)
    result = ContextPacker(min_probability=0.0, budget=total // 3, budget_scope="context").run(
        context(), candidates
    )
    assert result.stats["stop"] == "budget" and result.context_tokens <= total // 3
    result = ContextPacker(min_probability=0.0, budget=None).run(context(), candidates)
    assert result.stats["stop"] == "exhausted"


def test_learned_scorer_refuses_whole_chunk_units():
    with pytest.raises(ConfigError, match="learned scorer is fitted on sentence units"):
        ContextPacker(granularity="chunk")
    ContextPacker(granularity="chunk", scorer="hand")


def test_learned_packer_never_selects_a_heading_alone():
    doc = "# Lumen premiere\nThe opera Lumen was written by Ada Varga."
    heading = candidate("h", doc, 1.0, "Lumen")
    sentences = tuple(
        (a, b) for a, b in [(0, len("# Lumen premiere")), (len("# Lumen premiere") + 1, len(doc))]
    )
    chunk = heading.chunk
    heading = Candidate(
        Chunk(
            chunk.id,
            chunk.doc_id,
            chunk.text,
            0,
            len(doc),
            chunk.token_count,
            chunk.metadata,
            (),
            sentences,
        ),
        1.0,
        {"fused": 1.0},
    )
    result = ContextPacker(min_probability=0.0, max_units=1, span_fill=0).run(
        context("Who wrote Lumen?"), [heading]
    )
    assert result.passages[0].text == "The opera Lumen was written by Ada Varga."
