"""`stseval export`: a scored setting as a plain sentence-transformers folder (or, for encoders that are not
transformers, the whitening alone as .safetensors + a JSON manifest).

The folder is written by hand, file by file, with the module type names that sentence-transformers 2.x to 6.x
all import (`sentence_transformers.models.Transformer`, `.Pooling`, `.WeightedLayerPooling`, `.Dense`,
`.Normalize`; 6.x maps them to its new modules) and config keys every version reads (6.x converts the old
`pooling_mode_*_tokens` / `word_embedding_dimension` keys itself). Nothing in it is stseval code, so
`SentenceTransformer(FOLDER)` loads it without stseval and without `trust_remote_code`:

    0  Transformer            the model folder's config.json, safetensors weights and tokenizer files;
                              max_seq_length = the max length stseval scored with (64; PAWSX 128)
    1  [WeightedLayerPooling] first-last-avg, last2avg, layer-avg:N only: the token states become the mean of
                              hidden_states[a] and hidden_states[b] (weights 1, 0, ..., 0, 1) or hidden_states[N]
                              (weights 1, 0, ...); config.json gets output_hidden_states so they are returned
    2  Pooling                cls -> "cls"; last-avg, the layer poolings -> "mean"; max -> "max"; pooler,
                              pooler-tanh -> "cls" followed by a Dense holding BERT's trained pooler layer
                              (identity or tanh activation). include_prompt = true: stseval pools the prefix too
    3  [Dense]                the whitening: identity activation, weight = kernel.T (k, d),
                              bias = -(beta mu) @ kernel (k,), so x -> (x - beta mu) @ kernel as stseval applies it
    4  Normalize              unit length: cosine is then a dot product, and no cosine changes
    a prefix ("query: ")      the default prompt: prompts {"query": prefix}, default_prompt_name "query" in
                              config_sentence_transformers.json, so plain `encode(texts)` puts it in front

Example:
    >>> export_model(load_encoder("default"), Pooling("last-avg"), Path("e5-whitened"), prefix="query: ")
    >>> # elsewhere, without stseval:  SentenceTransformer("e5-whitened").encode(["花呗怎么还款"])
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.settings import Pooling, parse_poolings

if TYPE_CHECKING:
    from stseval.encoders.protocol import SentenceEncoder
    from stseval.methods.whitening import Whitening

MODULE_TYPES = {
    "Transformer": "sentence_transformers.models.Transformer",
    "WeightedLayerPooling": "sentence_transformers.models.WeightedLayerPooling",
    "Pooling": "sentence_transformers.models.Pooling",
    "Dense": "sentence_transformers.models.Dense",
    "Normalize": "sentence_transformers.models.Normalize",
}
"""modules.json type names: the `sentence_transformers.models.*` paths that every version imports (6.x through
its deprecated-import map, see sentence_transformers/util/deprecated_import.py)."""

IDENTITY = "torch.nn.modules.linear.Identity"
TANH = "torch.nn.modules.activation.Tanh"
PROMPT_NAME = "query"
TRANSFORM_FILE = "whitening.safetensors"
MANIFEST_FILE = "manifest.json"
MODEL_WEIGHT_FILES = ("model.safetensors",)
_POOLING_MODES = {"cls": "cls", "last-avg": "mean", "max": "max", "pooler": "cls", "pooler-tanh": "cls"}


@dataclass
class Exported:
    """What `export_model` wrote: the folder, its kind ("sentence-transformers" or "transform"), the settings."""

    folder: Path
    kind: str
    model: str
    pooling: str
    prefix: str
    max_length: int
    dims: int
    whitening: dict = field(default_factory=dict)


def check_out_empty(out: Path) -> None:
    """Refuse an --out that exists and is not an empty folder, naming --out."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StsevalError(f"--out {out}: exists and is not empty; export writes a new folder (choose another)")


def check_kernel_matches(whitening: Whitening, source: str, encoder: SentenceEncoder, pooling: str,
                         prefix: str) -> None:
    """Refuse a kernel fitted on another model, pooling or prefix than asked, naming the kernel file."""
    facts = whitening.provenance
    if "model_fingerprint" not in facts or "pooling" not in facts:
        raise StsevalError(f"--kernel {source}: records no model and pooling it was fitted with; export kernels "
                           "saved by `stseval whiten --save-kernel`")
    if facts["model_fingerprint"] != encoder.fingerprint:
        raise StsevalError(f"--kernel {source}: fitted on {facts.get('model', '?')} (fingerprint "
                           f"{str(facts['model_fingerprint'])[:12]}), not on --model {encoder.name} "
                           f"({encoder.fingerprint[:12]})")
    if facts["pooling"] != pooling:
        raise StsevalError(f"--kernel {source}: fitted on --pooling {facts['pooling']}, not {pooling}")
    if facts.get("prefix", "") != prefix:
        raise StsevalError(f"--kernel {source}: fitted with --prefix {facts.get('prefix', '')!r}, not {prefix!r}")
    if whitening.mu.shape[1] != encoder.dimension:
        raise StsevalError(f"--kernel {source}: fitted on {whitening.mu.shape[1]}-d vectors; "
                           f"{encoder.name} gives {encoder.dimension}-d ones")


def export_model(encoder: SentenceEncoder, pooling: Pooling, out: Path, *, prefix: str = "",
                 whitening: Whitening | None = None, max_length: int = 64, card: str = "",
                 provenance: dict | None = None) -> Exported:
    """Write `encoder` + `pooling` (+ `whitening`) as a folder at `out`, atomically (a temp folder, then rename).

    Args:
        encoder: a loaded encoder; a transformer `Encoder` (fp32 backend) gives a sentence-transformers folder,
            USE-multilingual and `vectors:` encoders the whitening alone (`whitening.safetensors` with mu,
            kernel, beta, gamma, k, and `manifest.json`).
        pooling: a pooling `encoder` supports.
        out: a folder that does not exist or is empty.
        prefix: put before every sentence; becomes the default prompt.
        whitening: applied after pooling as a Dense module; None exports the pooled vectors alone.
        max_length: tokens per sentence, [CLS] and [SEP] included (the scored setting's).
        card: markdown for README.md (the model card); provenance: JSON-able facts for its `stseval.json`.
    Returns:
        an `Exported` naming the folder and what it holds.
    Raises:
        StsevalError naming --out, --pooling or --model when the export cannot be what stseval scored.
    """
    from stseval.encoders.encoder import Encoder
    from stseval.encoders.protocol import can_pool

    out = Path(out)
    check_out_empty(out)
    if not can_pool(encoder, pooling):
        raise StsevalError(f"--pooling {pooling}: not available for {encoder.name}")
    is_transformer = isinstance(encoder, Encoder)
    backend = getattr(encoder, "backend", "fp32")
    if is_transformer and backend != "fp32":
        raise StsevalError(f"--model {encoder.name}: export writes the fp32 weights; drop the +{backend} "
                           "backend (a sentence-transformers folder runs in fp32)")
    if not is_transformer and whitening is None:
        raise StsevalError(f"--model {encoder.name}: not a transformer, so only a whitening can be exported; "
                           "give --kernel or --whiten-from")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if is_transformer:
            _write_sentence_transformer(encoder, pooling, staging, prefix, whitening, max_length)
        else:
            _write_transform(encoder, pooling, staging, prefix, whitening)  # type: ignore[arg-type]
        facts = dict(provenance or {}, model=encoder.name, model_fingerprint=encoder.fingerprint, pooling=str(pooling),
                     prefix=prefix, max_length=max_length, whitening=_whitening_facts(whitening))
        (staging / "stseval.json").write_text(json.dumps(facts, indent=2, sort_keys=True, default=str) + "\n",
                                              encoding="utf-8")
        (staging / "README.md").write_text(card or f"# {encoder.name} ({pooling})\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    dims = encoder.dimension if whitening is None else whitening.n_components
    return Exported(out, "sentence-transformers" if is_transformer else "transform", encoder.name, str(pooling), prefix,
                    max_length, dims, _whitening_facts(whitening))


def _whitening_facts(whitening: Whitening | None) -> dict:
    if whitening is None:
        return {}
    return {"beta": whitening.beta, "gamma": whitening.gamma, "k": whitening.n_components,
            "fit": {key: value for key, value in whitening.provenance.items()
                    if key in ("task", "fit_on", "fit_splits", "n_fit_vectors", "rank", "max_length")}}


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _save_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in tensors.items()}, str(path))


def _write_sentence_transformer(encoder, pooling: Pooling, folder: Path, prefix: str, whitening: Whitening | None,
                                max_length: int) -> None:
    """The modules listed in the module docstring, into `folder`."""
    from stseval.encoders.encoder import TOKENIZER_FILES

    source = Path(encoder.folder)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    kind, layer = pooling.kind, pooling.layer
    layer_pooling = kind in ("first-last-avg", "last2avg") or layer is not None
    if layer_pooling:
        config["output_hidden_states"] = True  # the Transformer module passes them on as all_layer_embeddings
    _write_json(folder / "config.json", config)
    for weights_file in sorted(source.glob("*.safetensors")):
        shutil.copyfile(weights_file, folder / weights_file.name)
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    max_seq_length = min(int(max_length), int(encoder.max_positions))
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})

    modules: list[tuple[str, str]] = [("Transformer", "")]
    dim = encoder.dimension
    if layer_pooling:
        n_layers = int(encoder.n_layers)
        start = 1 if kind == "first-last-avg" else n_layers - 1 if kind == "last2avg" else int(layer or 0)
        weights = np.zeros(n_layers + 1 - start, dtype=np.float32)
        weights[0] = 1.0
        if kind in ("first-last-avg", "last2avg"):
            weights[-1] = 1.0
        path = f"{len(modules)}_WeightedLayerPooling"
        _write_json(folder / path / "config.json",
                    {"word_embedding_dimension": dim, "layer_start": start, "num_hidden_layers": n_layers})
        _save_tensors(folder / path / "model.safetensors", {"layer_weights": weights})
        modules.append(("WeightedLayerPooling", path))
    mode = "mean" if layer_pooling else _POOLING_MODES[kind]
    path = f"{len(modules)}_Pooling"
    _write_json(folder / path / "config.json", {
        "word_embedding_dimension": dim, "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean", "pooling_mode_max_tokens": mode == "max",
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True})
    modules.append(("Pooling", path))
    if pooling.needs_pooler:
        state = encoder.model.state_dict()
        path = f"{len(modules)}_Dense"
        _write_json(folder / path / "config.json", {"in_features": dim, "out_features": dim, "bias": True,
                                                    "activation_function": TANH if kind == "pooler-tanh"
                                                    else IDENTITY})
        _save_tensors(folder / path / "model.safetensors",
                      {"linear.weight": state["pooler.dense.weight"].float().cpu().numpy(),
                       "linear.bias": state["pooler.dense.bias"].float().cpu().numpy()})
        modules.append(("Dense", path))
    if whitening is not None:
        kernel = whitening.kernel.astype(np.float64)
        shift = np.float64(whitening.beta) * whitening.mu.astype(np.float64)
        path = f"{len(modules)}_Dense"
        _write_json(folder / path / "config.json", {"in_features": dim, "out_features": whitening.n_components,
                                                    "bias": True, "activation_function": IDENTITY})
        _save_tensors(folder / path / "model.safetensors",
                      {"linear.weight": kernel.T, "linear.bias": -(shift @ kernel)[0]})
        modules.append(("Dense", path))
    path = f"{len(modules)}_Normalize"
    (folder / path).mkdir()
    modules.append(("Normalize", path))
    _write_json(folder / "modules.json", [{"idx": index, "name": str(index), "path": module_path,
                                           "type": MODULE_TYPES[kind]}
                                          for index, (kind, module_path) in enumerate(modules)])
    _write_json(folder / "config_sentence_transformers.json", {
        "__version__": _versions(), "prompts": {PROMPT_NAME: prefix} if prefix else {},
        "default_prompt_name": PROMPT_NAME if prefix else None, "similarity_fn_name": "cosine"})


def _write_transform(encoder: SentenceEncoder, pooling: Pooling, folder: Path, prefix: str,
                     whitening: Whitening) -> None:
    """The whitening alone: whitening.safetensors (mu, kernel, beta, gamma, k) and manifest.json."""
    _save_tensors(folder / TRANSFORM_FILE, {
        "mu": whitening.mu, "kernel": whitening.kernel, "beta": np.array([whitening.beta]),
        "gamma": np.array([whitening.gamma]), "k": np.array([whitening.n_components])})
    _write_json(folder / MANIFEST_FILE, {
        "format": "stseval-whitening/1", "file": TRANSFORM_FILE, "model": encoder.name,
        "model_fingerprint": encoder.fingerprint, "pooling": str(pooling), "prefix": prefix,
        "input_dimension": int(whitening.mu.shape[1]), "k": whitening.n_components, "beta": whitening.beta,
        "gamma": whitening.gamma,
        "apply": "y = (x - beta * mu) @ kernel, x the model's (n, d) sentence vectors; compare y by cosine",
        "why_not_a_sentence_transformers_folder": f"{encoder.name} is not a transformer that sentence-transformers "
                                                   "loads; encode with it, then apply this transform"})


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name, package in (("sentence_transformers", "sentence-transformers"), ("transformers", "transformers"),
                          ("pytorch", "torch")):
        try:
            found[name] = version(package)
        except PackageNotFoundError:
            pass
    return found


def model_card(exported_name: str, facts: dict, rows: list[dict]) -> str:
    """README.md of an exported folder: how to load it, the rows that justify it, and where it came from.

    rows: {"task", "split", "method", "spearman", "ci_low", "ci_high", "n_pairs"} dicts (Spearman x 1, as rows
    store it; shown x 100).
    """
    prefix = facts.get("prefix", "")
    whitening = facts.get("whitening") or {}
    lines = [
        f"# {exported_name}", "",
        f"Exported by stseval {facts.get('stseval_version', '')} on {facts.get('created_at', _now())}: "
        f"`{facts.get('model', '')}`, pooling `{facts.get('pooling', '')}`"
        + (f", prefix {prefix!r} (the default prompt)" if prefix else "")
        + (f", whitening beta {whitening.get('beta')} gamma {whitening.get('gamma')} k {whitening.get('k')}"
           if whitening else "") + ".", "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        f'model = SentenceTransformer("{exported_name}")  # no stseval, no trust_remote_code needed',
        'vectors = model.encode(["花呗怎么还款", "借呗还款"])  # unit length: cosine = dot product',
        "```", ""]
    fit = whitening.get("fit") or {}
    if fit:
        lines += ["## Fit", "",
                  f"Fitted on {fit.get('task', '?')} `{fit.get('fit_on', '?')}` "
                  f"({fit.get('fit_splits', '') or 'see fit_on'}): {fit.get('n_fit_vectors', '?')} sentence "
                  f"vectors, covariance rank {fit.get('rank', '?')}, max length {fit.get('max_length', '?')}.", ""]
    if rows:
        lines += ["## Scores (Spearman of cosine x 100, 95% bootstrap interval)", "",
                  "| task | split | method | Spearman | 95% CI | pairs |", "|---|---|---|---:|---|---:|"]
        for row in rows:
            interval = ("" if any(math.isnan(float(row.get(key, math.nan))) for key in ("ci_low", "ci_high"))
                        else f"[{100 * float(row['ci_low']):.2f}, {100 * float(row['ci_high']):.2f}]")
            lines.append(f"| {row['task']} | {row['split']} | {row['method']} | {100 * float(row['spearman']):.2f} "
                         f"| {interval} | {int(row.get('n_pairs', 0))} |")
        lines.append("")
    lines += ["## Provenance", "", "```json", json.dumps(facts, indent=2, sort_keys=True, default=str), "```", ""]
    return "\n".join(lines)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def export(model: str | SentenceEncoder, pooling: str | Pooling, out: Path, *, prefix: str = "",
           kernel: Path | None = None, whitening: Whitening | None = None, whiten_from: Path | None = None,
           task: str | None = None, choose_on: str = "valid", simcse_run: Path | None = None,
           max_length: int | None = None, data_dir: Path | None = None, rows_from: Path | None = None) -> Exported:
    """`stseval export`: check every input, then write the folder (see `export_model`); nothing is written on error.

    Sources of the whitening (at most one): `kernel`, a file from `whiten --save-kernel` (its recorded model
    fingerprint, pooling and prefix must be the ones asked); `whitening`, a fitted `Whitening` (Python only;
    PCA is `WhiteningBasis.whitening(0, 0, k)`); `whiten_from` + `task` (+ `choose_on`), the `<method>-chosen`
    row of a `whiten --choose-on` results file, refitted here (`chosen_whitening`). `simcse_run` exports a
    trained SimCSE folder (its pooling and prefix), alone or with a kernel fitted on it.
    max_length: tokens per sentence; None takes the kernel's or the task's (64 when neither says).
    rows_from: a results CSV whose rows of this model, pooling and prefix (raw, and the kernel's setting) go into
    the model card (--whiten-from puts its own there).
    """
    from stseval.encoders.encoder import load_encoder
    from stseval.encoders.protocol import can_pool, supported_poolings
    from stseval.methods.whitening import load_whitening
    from stseval.runs.results import provenance as run_provenance

    out = Path(out)
    check_out_empty(out)
    given = [name for name, value in (("--kernel", kernel), ("--whiten-from", whiten_from),
                                      ("whitening", whitening)) if value is not None]
    if len(given) > 1:
        raise StsevalError(f"{given[1]}: give one whitening source, not {' and '.join(given)}")
    value = _one_pooling(pooling)
    pooling = str(value)  # the text rows, kernels and run folders record
    facts: dict = {"source": "raw"}
    if simcse_run is not None:
        settings = _simcse_identity(Path(simcse_run))
        trained_pooling, trained_prefix = str(settings.get("pooling", pooling)), str(settings.get("prefix", ""))
        if trained_pooling != pooling:
            raise StsevalError(f"--pooling {pooling}: {simcse_run} was trained with --pooling {trained_pooling}")
        if trained_prefix != prefix:
            raise StsevalError(f"--prefix {prefix!r}: {simcse_run} was trained with --prefix {trained_prefix!r}")
        model = str(simcse_run)
        max_length = max_length or int(settings.get("max_length", 0) or 0) or None
        facts = {"source": "simcse", "simcse_run": str(simcse_run), "simcse": settings}
    loaded = load_encoder(model) if isinstance(model, (str, Path)) else model
    if not can_pool(loaded, value):
        raise StsevalError(f"--pooling {pooling}: {loaded.name} gives {', '.join(supported_poolings(loaded))} only")
    rows: list[dict] = []
    if kernel is not None:
        whitening = load_whitening(Path(kernel))
        check_kernel_matches(whitening, str(kernel), loaded, pooling, prefix)
        facts = dict(facts, kernel=str(kernel))
        if rows_from is not None:
            rows = kernel_rows(Path(rows_from), loaded, pooling, prefix, whitening)
    elif whiten_from is not None:
        if task is None:
            raise StsevalError("--task: --whiten-from needs the task whose chosen row to export")
        whitening, rows = chosen_whitening(loaded, value, prefix, Path(whiten_from), task, choose_on, data_dir)
        facts = dict(facts, whiten_from=str(whiten_from), task=task, choose_on=choose_on)
    elif whitening is not None and whitening.mu.shape[1] != loaded.dimension:
        raise StsevalError(f"whitening: fitted on {whitening.mu.shape[1]}-d vectors; {loaded.name} gives "
                           f"{loaded.dimension}-d ones")
    if whitening is not None:
        facts["source"] = f"{facts['source']}+whitening" if facts["source"] == "simcse" else "whitening"
    length = int(max_length or (whitening.provenance.get("max_length") if whitening is not None else 0) or 64)
    facts.update(run_provenance(), model=loaded.name, model_fingerprint=loaded.fingerprint, pooling=pooling,
                 prefix=prefix, max_length=length, whitening=_whitening_facts(whitening))
    card = model_card(out.name, facts, rows)
    return export_model(loaded, value, out, prefix=prefix, whitening=whitening, max_length=length, card=card,
                        provenance=facts)


def _one_pooling(pooling: str | Pooling) -> Pooling:
    poolings = parse_poolings(pooling)
    if len(poolings) != 1:
        raise StsevalError(f"--pooling {pooling}: export takes one pooling")
    return poolings[0]


def _simcse_identity(run_dir: Path) -> dict:
    """The settings a finished SimCSE run folder records (its settings file), or StsevalError naming it."""
    from stseval.methods.simcse import settings_path

    path = settings_path(run_dir)
    try:
        identity = json.loads(path.read_text(encoding="utf-8"))["identity"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StsevalError(f"--simcse-run {run_dir}: not a finished SimCSE run folder ({path}: {err})") from None
    return identity if isinstance(identity, dict) else {}


def chosen_whitening(encoder: SentenceEncoder, value: Pooling, prefix: str, results: Path, task: str,
                     choose_on: str, data_dir: Path | None) -> tuple[Whitening, list[dict]]:
    """Refit the whitening of the `<method>-chosen` row (whitening or pca) of `task` in a results file.

    Returns the whitening and the rows behind it (raw and chosen, on the chosen row's split). The refit encodes
    the row's fit sentences again; its Spearman on the row's split must equal the row's value to 1e-4 (a
    changed model, data or code would not), else StsevalError naming --whiten-from.
    """
    from stseval.data.tasks import TASKS, resolve_data_dir, task_by_name
    from stseval.evaluation.scoring import encode_splits, score_pairs
    from stseval.methods.whitening import fit_whitening_basis
    from stseval.options import CHOSEN_SUFFIX
    from stseval.runs.results import read_rows
    from stseval.runs.specs import FitSource, available_splits

    spec = task_by_name(task, option="--task")
    pooling = str(value)  # the text rows hold
    frame = read_rows(results)
    same = frame[(frame["model_fingerprint"] == encoder.fingerprint) & (frame["pooling"] == pooling)
                 & (frame["prefix"] == prefix) & (frame["status"] == "ok") & (frame["metric"] == "spearman_cosine")]
    chosen = same[same["method"].isin([f"whitening{CHOSEN_SUFFIX}", f"pca{CHOSEN_SUFFIX}"])
                  & (same["task"] == spec.name) & (same["chosen_on"] == choose_on)]
    if chosen.empty:
        raise StsevalError(f"--whiten-from {results}: no whitening{CHOSEN_SUFFIX} or pca{CHOSEN_SUFFIX} row of "
                           f"{encoder.name} --pooling {pooling} --prefix {prefix!r} on {spec.name} chosen on "
                           f"{choose_on}; run `stseval whiten ... --choose-on {choose_on}` first")
    # several families or fit sources: the one that did best on the choosing split, as --choose-on picks
    row = chosen.iloc[int(np.argmax(chosen["best_valid_spearman"].astype(float).to_numpy()))].to_dict()
    if str(row["fit_on"]).startswith("file:") or row["fit_on"] == "pooled":
        raise StsevalError(f"--whiten-from {results}: the chosen row was fitted on --fit-on {row['fit_on']}, "
                           "which the row does not record fully; save its kernel with --save-kernel and use --kernel")
    folder = resolve_data_dir(data_dir)
    fit = FitSource.parse(str(row["fit_on"]))
    own = fit.own_splits(spec, folder)
    source = spec if own else TASKS[fit.value]
    fit_splits = own or available_splits(source, folder)
    split = str(row["split"])
    encoded = encode_splits(encoder, spec, sorted({*(own or []), split}), [value], folder, prefix=prefix)
    parts = [encoded[name].all_vectors(pooling) for name in own]
    if not own:
        other = encode_splits(encoder, source, fit_splits, [value], folder, prefix=prefix)
        parts = [other[name].all_vectors(pooling) for name in fit_splits]
    basis = fit_whitening_basis(np.concatenate(parts))
    dims = None if row["dims"] == "full" else int(row["dims"])
    facts = {"model": encoder.name, "model_fingerprint": encoder.fingerprint, "pooling": pooling, "prefix": prefix,
             "task": spec.name, "fit_on": fit.label, "fit_splits": "+".join(fit_splits), "n_fit_vectors": basis.n_fit,
             "rank": basis.rank, "max_length": spec.max_length}
    whitening = basis.whitening(float(row["beta"]), float(row["gamma"]), dims, facts)
    scored = encoded[split]
    refit = score_pairs(whitening.apply(scored.vectors_a[pooling]), whitening.apply(scored.vectors_b[pooling]),
                        scored.gold_scores, n_resamples=0).spearman
    if abs(refit - float(row["value"])) > REFIT_TOLERANCE:
        raise StsevalError(f"--whiten-from {results}: the refitted whitening scores {refit:.6f} on {spec.name} "
                           f"{split}, the row says {float(row['value']):.6f}; the model, data or code changed since")
    card_rows = [_card_row(record) for _, record in same.iterrows()
                 if record["method"] == "raw" or record["method"] == row["method"]]
    return whitening, card_rows


REFIT_TOLERANCE = 1e-4
"""How far a refitted whitening's Spearman may be from the row it reproduces: the same vectors and fit give the
same float32 arithmetic up to summation order (~1e-6 in a vector), which moves a Spearman over >= 1000 pairs by
far less than 1e-4 unless two cosines swap; a changed model or data file moves it by more."""


def kernel_rows(results: Path, encoder: SentenceEncoder, pooling: str, prefix: str, whitening: Whitening) -> list[dict]:
    """Rows of a results file for a kernel's card: raw, and whitening at the kernel's (fit_on, dims, beta, gamma)."""
    from stseval.options import exponent_label
    from stseval.runs.results import read_rows

    frame = read_rows(results)
    same = frame[(frame["model_fingerprint"] == encoder.fingerprint) & (frame["pooling"] == pooling)
                 & (frame["prefix"] == prefix) & (frame["status"] == "ok") & (frame["metric"] == "spearman_cosine")]
    dims = "full" if whitening.n_components == encoder.dimension else str(whitening.n_components)
    setting = {"method": "whitening", "fit_on": str(whitening.provenance.get("fit_on", "")), "dims": dims,
               "beta": exponent_label(whitening.beta), "gamma": exponent_label(whitening.gamma)}
    matches = same["method"] == "whitening"
    for name, value in setting.items():
        matches &= same[name] == value
    return [_card_row(record) for _, record in same[(same["method"] == "raw") | matches].iterrows()]


def _card_row(record) -> dict:
    return {"task": record["task"], "split": record["split"], "method": record["method"],
            "spearman": float(record["value"]), "ci_low": float(record["ci_low"] or "nan"),
            "ci_high": float(record["ci_high"] or "nan"), "n_pairs": int(record["n_pairs"] or 0)}
