"""Export a sentence-transformers model's transformer to ONNX (needs the ``torch`` extra).

Only the transformer is exported (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``;
output ``last_hidden_state``); pooling and normalisation run in numpy in
:class:`~ragtrim.embedding.onnx.OnnxEmbedder`, read from the model's own ``modules.json``.
The export is checked against torch on padded inputs before it is kept: a traced graph that
ignored the attention mask or a dynamic axis would otherwise produce wrong vectors silently.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ragtrim.embedding.models import TORCH_EXTRA
from ragtrim.errors import ConfigError, missing_extra

logger = logging.getLogger(__name__)

#: ONNX opset of exported graphs (onnxruntime >= 1.14 runs it)
OPSET = 17
#: exported output and pooled torch output must agree this closely (cosine) on the probe texts
_EXPORT_CHECK_COSINE = 0.9999
_PROBE_TEXTS = (
    "A short probe.",
    "A longer probe sentence, so that the batch is padded and the attention mask matters.",
    "Third probe: numbers 1 2 3 and punctuation!",
)


def atomic_target(destination: Path) -> Path:
    """A fresh temporary file beside ``destination``, to be renamed onto it when complete.

    Readable by everyone like an ordinary file (``mkstemp`` makes it owner-only), so a cache
    directory shared by a team works.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=destination.name + ".", suffix=".tmp", dir=destination.parent
    )
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def export_transformer(source: Path, destination: Path) -> Path:
    """Write ``source``'s transformer as ONNX to ``destination`` atomically; returns it.

    Raises :class:`~ragtrim.errors.MissingDependencyError` naming the ``torch`` extra when
    torch or transformers is absent, and :class:`~ragtrim.errors.ConfigError` when the export
    does not reproduce torch's output.
    """
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise missing_extra("torch and transformers (needed to export ONNX)", TORCH_EXTRA) from None

    try:
        model = AutoModel.from_pretrained(str(source), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the transformer in {source} for ONNX export: {exc}"
        ) from exc
    model.eval()

    class _LastHiddenState(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    batch = tokenizer(list(_PROBE_TEXTS), padding=True, return_tensors="pt")
    inputs = (
        batch["input_ids"],
        batch["attention_mask"],
        batch.get("token_type_ids", torch.zeros_like(batch["input_ids"])),
    )
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    tmp = atomic_target(destination)
    try:
        wrapper = _LastHiddenState(model)
        with torch.no_grad():
            # before the export: tracing leaves the torch model computing other values after
            expected = wrapper(*inputs).numpy()
        with warnings.catch_warnings(), torch.no_grad():
            # the TorchScript exporter warns about its own deprecation and about traced Python
            # conditionals; the probe comparison below is what tells whether the graph is right
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                inputs,
                str(tmp),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        _check_export(tmp, [t.numpy() for t in inputs], expected, source)
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("exported %s to ONNX at %s", source, destination)
    return destination


def _check_export(path: Path, inputs: list[np.ndarray], expected: np.ndarray, source: Path) -> None:
    """Compare mean-pooled rows of the exported graph with torch's on a padded batch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = dict(zip(["input_ids", "attention_mask", "token_type_ids"], inputs, strict=True))
    wanted = {i.name for i in session.get_inputs()}
    got = session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in wanted})[0]
    mask = inputs[1][:, :, None].astype(np.float64)
    pooled = [(h * mask).sum(1) / mask.sum(1) for h in (np.asarray(got), expected)]
    a, b = (p / np.linalg.norm(p, axis=1, keepdims=True) for p in pooled)
    worst = float((a * b).sum(1).min())
    if worst < _EXPORT_CHECK_COSINE:
        raise ConfigError(
            f"ONNX export of {source} does not reproduce torch (worst probe cosine {worst:.6f} < "
            f"{_EXPORT_CHECK_COSINE}); use SentenceTransformerEmbedder for this model"
        )
