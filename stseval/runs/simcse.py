"""The `stseval simcse-train` queue: for each (task, pooling, dropout) cell, score before, train, score after.

A cell is one SimCSE run. For each one not yet in the results file:

1. "before": the base model's raw vectors on the test split (method `raw`; once per task and pooling);
2. train unsupervised SimCSE (stseval/simcse.py) on the task's sentences, labels unused, and save the
   model to `runs/simcse/<model>-<task>-<pooling>-d<dropout>-s<seed>/` (safetensors, sentence-
   transformers folder, README model card); an interrupted training resumes from its last checkpoint;
3. "after": the trained model in eval mode (method `simcse`, with `dropout` and `train_on` filled);
4. with `then_whiten`, the SimCSE vectors whitened with statistics fitted on the training sentences
   (method `simcse+whitening`).

Rows go to the long-format results file as soon as a cell is done (results.ResultsFile), so Ctrl-C
loses at most the cell in progress, and a re-run skips finished cells.

Our data has no train split for ATEC, LCQMC and PAWSX, so `--train-on all-available` (the default,
like Su's train+valid+test) means valid+test there: the model sees the test sentences, without
labels, as in Su's runs. Every row's `train_on` says which sentences trained the model, e.g.
"valid+test (10000 of 80000 sentences)".

Multi-GPU: run the same command under `torchrun --nproc_per_node N -m stseval.cli simcse-train ...`
(or `accelerate launch`); every process trains its share of each global batch (see
`simcse.train_simcse`) and only rank 0 evaluates and writes rows.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from stseval.common.errors import StsevalError
from stseval.evaluation.scoring import encode_splits, sample_pairs, score_pairs, split_label
from stseval.evaluation.metrics import bootstrap_ci, cosine_scores, paired_difference_ci, spearman
from stseval.encoders.pooling import parse_poolings
from stseval.runs.results import ResultRow, ResultsFile, cell_key, library_versions, machine_description, provenance
from stseval.methods.simcse import (
    BEST_VALID_DIR,
    CURVE_FILE,
    LOSSES,
    SimcseSettings,
    check_dropout,
    default_max_sentences,
    ensure_writable,
    select_sentences,
    ValidationPairs,
    train_simcse,
)
from stseval.data.tasks import (
    TaskSpec, data_fingerprint, file_sha256, load_pairs, parse_task_names, read_sentence_lines, resolve_data_dir,
    split_path,
)
from stseval.runs.whiten import slugify
from stseval.methods.whitening import apply_whitening, fit_whitening

TRAIN_ON_CHOICES = ("all-available", "train", "valid", "test", "a file with one sentence per line")


def parse_dropouts(text_or_list: str | float | Sequence[str | float]) -> list[float]:
    """'0.1,0.3' or [0.1, 0.3] -> [0.1, 0.3]; raises StsevalError naming --dropout."""
    items = [text_or_list] if isinstance(text_or_list, (str, float, int)) else list(text_or_list)
    dropouts: list[float] = []
    for part in (piece.strip() for item in items for piece in str(item).split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise StsevalError(f"--dropout: {part!r} is not a number in [0, 1)") from None
        if check_dropout(value) not in dropouts:
            dropouts.append(value)
    if not dropouts:
        raise StsevalError("--dropout: give at least one rate, e.g. 0.1,0.3")
    return dropouts


def parse_max_sentences(text: str | int | None) -> int | None | str:
    """'auto' (Su: 10,000, PAWSX all), 'all' (None) or a positive count; raises naming --max-sentences."""
    if text is None or str(text).strip().lower() == "all":
        return None
    text = str(text).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) >= 2:
        return int(text)
    raise StsevalError(f"--max-sentences: {text!r} is not 'auto', 'all' or a count of at least 2")


def training_sentences(spec: TaskSpec, train_on: str, data_dir: Path) -> tuple[list[str], str]:
    """Every training sentence for `train_on`, in file order (no dedupe), and a name for them.

    Args:
        spec: the task.
        train_on: "all-available" (every split file present: train+valid+test where train exists),
            "train", "valid", "test", or a path to a UTF-8 file with one sentence per line.
        data_dir: the data folder.
    Returns:
        (sentences, source) with source like "valid+test" or "file:wiki.txt"; each pair gives its
        sentence1 and its sentence2.
    Raises:
        StsevalError naming --train-on for a split the task lacks, or an empty / unreadable file.
    """
    present = [split for split in spec.files if split_path(spec, split, data_dir).is_file()]
    if train_on == "all-available":
        splits = present
    elif train_on in ("train", "valid", "test"):
        if train_on not in present:
            raise StsevalError(f"--train-on: {spec.name} has no {train_on!r} split in {data_dir} "
                               f"(present: {', '.join(present) or 'none'}); use all-available or a file")
        splits = [train_on]
    else:
        path = Path(train_on)
        if not path.is_file():
            raise StsevalError(f"--train-on: {train_on!r} is not one of {', '.join(TRAIN_ON_CHOICES)}")
        return read_sentence_lines(path, "--train-on"), f"file:{path.name}"
    sentences = [text for split in splits for pair in load_pairs(spec, split, data_dir)
                 for text in (pair.sentence1, pair.sentence2)]
    if not sentences:
        raise StsevalError(f"--train-on: {spec.name} has no training sentences in {data_dir}")
    return sentences, "+".join(splits)


def run_simcse_queue(
    model: str,
    tasks: Sequence[str | TaskSpec] | str,
    poolings: Sequence[str] | str,
    dropouts: Sequence[float] | str,
    *,
    train_on: str = "all-available",
    max_sentences: int | None | str = "auto",
    loss: str = "su",
    batch_size: int = 64,
    learning_rate: float = 1e-5,
    epochs: int = 1,
    seed: int = 0,
    prefix: str = "",
    split: str = "test",
    max_eval_pairs: int | None = None,
    data_dir: Path | None = None,
    out_csv: Path = Path("runs/simcse/simcse.csv"),
    runs_dir: Path = Path("runs"),
    then_whiten: bool = False,
    n_resamples: int = 1000,
    checkpoint_steps: int = 100,
    eval_batch_size: int = 64,
    device: str | None = None,
    curve_pairs: int | None = 1000,
    eval_steps: int = 20,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Score, train and re-score every (task, pooling, dropout) cell not yet in `out_csv`.

    Args:
        model: `--model` value for `encoders.load_encoder` ("default", a folder, a hub id).
        tasks: task names ("STS-B", "all", ...) or TaskSpecs.
        poolings: pooling names (see `stseval.encoders.pooling.POOLINGS`), each trained separately.
        dropouts: training dropout rates in [0, 1), e.g. [0.1, 0.3].
        train_on: see `training_sentences`.
        max_sentences: "auto" (10,000; PAWSX uncapped, as Su), None for all, or a count.
        loss, batch_size, learning_rate, epochs, checkpoint_steps: see `simcse.SimcseSettings`.
        seed: seeds the sentence sample, the training (data order, dropout masks) and the bootstrap; part of
            every row's cell key, so several seeds share one results file.
        prefix: prepended to every sentence in training and evaluation ("query: " for E5).
        split: the split scored, "test" by default.
        max_eval_pairs: score a seeded sample of at most this many pairs of the split (rows then name
            the split e.g. "test-sample1000"), when CPU time cannot pay for whole splits; None scores all.
        data_dir: data folder; None searches as `tasks.resolve_data_dir` does.
        out_csv: long-format results file (created or extended).
        runs_dir: trained models go to runs_dir/simcse/<model>-<task>-<pooling>-d<dropout>-s<seed>/.
        then_whiten: also score the SimCSE vectors whitened (fit on the training sentences).
        n_resamples: bootstrap resamples for the 95% interval; 0 skips it.
        device: "cpu", "cuda", ... for evaluation; None takes cuda when available (training uses cuda
            when available, and every process's device under torchrun).
        curve_pairs: the training curve scores a seeded sample of this many valid pairs every
            `eval_steps` steps (None: the whole valid split; 0: no curve and no best-valid row). The
            best-on-valid checkpoint gives the `simcse-best-valid` rows; test never chooses anything.
        show_progress: progress bars for encoding and training.
        log: one line per step of the queue.
    Returns:
        out_csv.
    Raises:
        StsevalError naming the option for a bad setting (dropout outside [0, 1), unknown task,
        pooling, loss or split, empty training set, unwritable --out or --runs-dir).
    """
    from stseval.encoders.cache import EmbeddingCache
    from stseval.encoders.encoder import load_encoder

    items = [tasks] if isinstance(tasks, str) else list(tasks)
    specs = parse_task_names([item.name if isinstance(item, TaskSpec) else item for item in items])
    pooling_names = parse_poolings(poolings)
    dropout_rates = parse_dropouts(dropouts)
    if loss not in LOSSES:
        raise StsevalError(f"--loss: unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    cap = parse_max_sentences(max_sentences) if isinstance(max_sentences, str) else max_sentences
    if max_eval_pairs is not None and max_eval_pairs < 10:
        raise StsevalError(f"--max-eval-pairs: {max_eval_pairs} is too few pairs for a Spearman correlation")
    if curve_pairs is not None and 0 < curve_pairs < 10:
        raise StsevalError(f"--curve-pairs: {curve_pairs} is too few pairs for a Spearman correlation (0 turns the curve off)")
    if eval_steps < 1:
        raise StsevalError(f"--eval-steps: {eval_steps} must be at least 1")
    if isinstance(cap, int) and cap < 2:
        raise StsevalError(f"--max-sentences: {cap} must be at least 2 (a batch needs negatives)")
    # every other setting, checked before anything slow starts
    SimcseSettings(pooling=pooling_names[0], dropout=dropout_rates[0], loss=loss, batch_size=batch_size,
                   learning_rate=learning_rate, epochs=epochs, seed=seed, checkpoint_steps=checkpoint_steps).validate()
    data_dir = resolve_data_dir(data_dir)
    out_csv, runs_dir = Path(out_csv), Path(runs_dir)
    ensure_writable(out_csv.parent, "--out")
    ensure_writable(runs_dir / "simcse", "--runs-dir")
    main_process = is_main_process()

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = load_encoder(model, device=device)
    unsupported = [p for p in pooling_names if not encoder.supports(p)]
    if unsupported:
        raise StsevalError(f"--pooling {','.join(unsupported)}: not available for {encoder.name} "
                           f"(trained pooler: {encoder.has_pooler}, layers: {encoder.n_layers})")
    results = ResultsFile(out_csv)
    cache = EmbeddingCache()
    base = {key: value for key, value in provenance(seed).items() if key != "seed"}
    versions = library_versions()
    machine = machine_description()

    for spec in specs:
        if split not in spec.files or not split_path(spec, split, data_dir).is_file():
            raise StsevalError(f"--split: {spec.name} has no {split!r} split in {data_dir}")
        all_sentences, source = training_sentences(spec, train_on, data_dir)
        task_cap = default_max_sentences(spec.name) if cap == "auto" else cap
        chosen = select_sentences(all_sentences, task_cap, seed)
        train_label = f"{source} ({len(chosen)} of {len(all_sentences)} sentences)"
        if source.startswith("file:"):
            fingerprint = f"{data_fingerprint(spec, [split], data_dir)}+{file_sha256(Path(train_on))[:12]}"
        else:
            fingerprint = data_fingerprint(spec, [split, *source.split("+")], data_dir)
        common = dict(model=encoder.name, model_fingerprint=encoder.fingerprint, task=spec.name,
                      split=split_label(split, max_eval_pairs),
                      prefix=prefix, data_sha256=fingerprint, seed=seed, machine=machine, **base)
        # rows of other data / weights / versions in --out: refuse now, not after hours of training
        results.check_compatible([ResultRow(pooling=pooling, method="raw", metric="spearman_cosine", value=np.nan,
                                            **common) for pooling in pooling_names])
        if main_process:
            _score_raw(encoder, spec, pooling_names, split, data_dir, prefix, eval_batch_size, cache, results,
                       common, n_resamples, seed, show_progress, log, max_eval_pairs)
        validation = _validation_pairs(spec, data_dir, prefix, curve_pairs, eval_steps, seed)
        trained_common = dict(common, train_on=train_label, loss=loss, batch_size=str(batch_size),
                              learning_rate=f"{learning_rate:g}", epochs=str(epochs))
        for pooling in pooling_names:
            for rate in dropout_rates:
                rows = _planned_rows(pooling, rate, trained_common, validation is not None, then_whiten)
                name = f"{encoder.name} {spec.name} {pooling} dropout={rate:g} seed={seed}"
                if all(results.has(cell_key(row)) for row in rows):
                    log(f"{name}: done, skipping")
                    continue
                settings = SimcseSettings(pooling=pooling, dropout=rate, loss=loss, batch_size=batch_size,
                                          learning_rate=learning_rate, epochs=epochs, max_length=spec.max_length,
                                          seed=seed, prefix=prefix, checkpoint_steps=checkpoint_steps)
                run_dir = runs_dir / "simcse" / _run_folder_name(model, spec.name, pooling, rate, seed, loss,
                                                                 batch_size, learning_rate, epochs)
                log(f"{name}: training on {train_label} -> {run_dir}")
                card = {"task": spec.name, "train_on": train_label, "data_dir": str(data_dir),
                        "data_sha256": fingerprint, "stseval_version": str(base["stseval_version"]),
                        "git_commit": str(base["git_commit"]), "versions": versions}
                trained = train_simcse(encoder.folder, chosen, settings, run_dir, base_model=model,
                                       base_fingerprint=encoder.fingerprint, card_facts=card,
                                       show_progress=show_progress, validation=validation)
                if not main_process:
                    continue
                _score_trained(trained, rows, encoder, spec, chosen, split, data_dir, prefix, eval_batch_size, device,
                               n_resamples, seed, show_progress, cache, max_eval_pairs)
                for row in rows:  # when this cell finished, not when the queue started
                    row.created_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
                results.add(rows)
                if validation is not None and (trained.folder / CURVE_FILE).is_file():
                    _publish_curve(trained.folder / CURVE_FILE, out_csv.parent / "curves", run_dir.name, name)
                best = next((row for row in rows if row.method == BEST_VALID_METHOD), None)
                log(f"{name}: spearman {rows[0].value:.4f} ({rows[1].value:+.4f} vs raw) after "
                    f"{trained.steps} steps ({trained.sentences_per_s:.1f} sentences/s)"
                    + (f"; best on {validation.label}: {best.value:.4f}" if best is not None else ""))
    return results.path


def is_main_process() -> bool:
    """False in every process but rank 0 under torchrun / accelerate launch: only rank 0 scores and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def _score_raw(encoder, spec, poolings, split, data_dir, prefix, batch_size, cache, results, common,
               n_resamples, seed, show_progress, log, max_eval_pairs=None) -> None:
    """Score the base model (method raw) for the poolings whose raw row is missing, in one encoding pass."""
    rows = [ResultRow(pooling=p, method="raw", metric="spearman_cosine", value=np.nan, **common) for p in poolings]
    pending = [row for row in rows if not results.has(cell_key(row))]
    if not pending:
        return
    started = time.perf_counter()
    evaluated = encode_splits(encoder, spec, [split], [row.pooling for row in pending], data_dir, prefix=prefix,
                              batch_size=batch_size, cache=cache, show_progress=show_progress,
                              max_pairs=max_eval_pairs, sample_seed=seed)[split]
    for row in pending:
        score = score_pairs(evaluated.vectors_a[row.pooling], evaluated.vectors_b[row.pooling],
                            evaluated.gold_scores, n_resamples, seed)
        row.value, row.ci_low, row.ci_high, row.n_pairs = score.spearman, score.ci_low, score.ci_high, score.n_pairs
        row.seconds = round(time.perf_counter() - started, 3)
        log(f"{encoder.name} {spec.name} {row.pooling} raw: spearman {row.value:.4f}")
    results.add(pending)


BEST_VALID_METHOD = "simcse-best-valid"
"""Method of the rows scored with the checkpoint that did best on the validation pairs (Su's headline is `simcse`)."""

MINUS_RAW = "spearman_cosine_minus_raw"
"""Metric of a paired difference row: Spearman of the method minus Spearman of raw on the same test pairs."""

MINUS_SIMCSE = "spearman_cosine_minus_simcse"
"""Metric of simcse+whitening's paired difference row against simcse (end of epoch)."""


def _planned_rows(pooling: str, rate: float, common: dict, with_best_valid: bool, then_whiten: bool) -> list[ResultRow]:
    """The rows one cell produces, values NaN until scored: [simcse, simcse - raw, (best-valid, best-valid - raw),
    (simcse+whitening, simcse+whitening - simcse)]."""
    def row(method: str, metric: str, **more) -> ResultRow:
        return ResultRow(pooling=pooling, method=method, metric=metric, value=np.nan, dropout=f"{rate:g}",
                         **common, **more)

    rows = [row("simcse", "spearman_cosine"), row("simcse", MINUS_RAW)]
    if with_best_valid:
        rows += [row(BEST_VALID_METHOD, "spearman_cosine"), row(BEST_VALID_METHOD, MINUS_RAW)]
    if then_whiten:
        rows += [row("simcse+whitening", "spearman_cosine", fit_on=common["train_on"]),
                 row("simcse+whitening", MINUS_SIMCSE, fit_on=common["train_on"])]
    return rows


def _validation_pairs(spec: TaskSpec, data_dir: Path, prefix: str, curve_pairs: int | None, every_steps: int,
                      seed: int) -> ValidationPairs | None:
    """A seeded sample of the task's valid pairs for the training curve, or None (curve off / no valid split)."""
    if curve_pairs == 0 or "valid" not in spec.files or not split_path(spec, "valid", data_dir).is_file():
        return None
    every_pair = load_pairs(spec, "valid", data_dir)
    sampled = curve_pairs is not None and curve_pairs < len(every_pair)
    pairs = sample_pairs(every_pair, curve_pairs if sampled else None, seed)
    return ValidationPairs([prefix + pair.sentence1 for pair in pairs], [prefix + pair.sentence2 for pair in pairs],
                           [float(pair.score) for pair in pairs],
                           label=split_label("valid", curve_pairs if sampled else None), every_steps=every_steps)


def _score_trained(trained, rows, encoder, spec, chosen, split, data_dir, prefix, batch_size, device, n_resamples,
                   seed, show_progress, cache, max_eval_pairs=None) -> None:
    """Fill a cell's rows: the saved model(s) loaded back in eval mode, scored on the test pairs, paired with raw."""
    from stseval.encoders.encoder import encode, load_encoder

    started = time.perf_counter()
    pooling = rows[0].pooling

    def predicted(encoder_to_score, use_cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        evaluated = encode_splits(encoder_to_score, spec, [split], [pooling], data_dir, prefix=prefix,
                                  batch_size=batch_size, cache=use_cache, show_progress=show_progress,
                                  max_pairs=max_eval_pairs, sample_seed=seed)[split]
        return evaluated.vectors_a[pooling], evaluated.vectors_b[pooling], evaluated.gold_scores

    raw_a, raw_b, gold = predicted(encoder, cache)  # cached by _score_raw
    raw_scores = cosine_scores(raw_a, raw_b)
    trained_encoder = load_encoder(str(trained.folder), device=device)
    vectors_a, vectors_b, _ = predicted(trained_encoder, None)
    scores = {"simcse": cosine_scores(vectors_a, vectors_b)}
    best_folder = trained.folder / BEST_VALID_DIR
    if any(row.method == BEST_VALID_METHOD for row in rows) and best_folder.is_dir():
        best_a, best_b, _ = predicted(load_encoder(str(best_folder), device=device), None)
        scores[BEST_VALID_METHOD] = cosine_scores(best_a, best_b)
    if any(row.method == "simcse+whitening" for row in rows):
        fit_vectors = encode(trained_encoder, chosen, [pooling], max_length=spec.max_length, prefix=prefix,
                             batch_size=batch_size, show_progress=show_progress)[pooling]
        mu, kernel = fit_whitening(fit_vectors)
        scores["simcse+whitening"] = cosine_scores(apply_whitening(vectors_a, mu, kernel),
                                                   apply_whitening(vectors_b, mu, kernel))
    extra = (f"run_dir={trained.folder};max_length={spec.max_length};trained_fingerprint={trained_encoder.fingerprint[:12]};"
             f"steps={trained.steps};final_loss={trained.final_loss:.4f};sentences_per_s={trained.sentences_per_s}")
    best = _best_valid_facts(best_folder)
    for row in rows:
        if row.method not in scores:
            row.status, row.extra = "n/a", "no best-valid checkpoint was saved"
            continue
        if row.metric == "spearman_cosine":
            low, high = bootstrap_ci(scores[row.method], gold, n_resamples, seed=seed) if n_resamples else (np.nan, np.nan)
            row.value, row.ci_low, row.ci_high = spearman(scores[row.method], gold), low, high
        else:
            baseline = raw_scores if row.metric == MINUS_RAW else scores["simcse"]
            row.value, row.ci_low, row.ci_high = (paired_difference_ci(scores[row.method], baseline, gold, n_resamples, seed=seed)
                                                  if n_resamples else (spearman(scores[row.method], gold)
                                                                       - spearman(baseline, gold), np.nan, np.nan))
        row.n_pairs = len(gold)
        row.seconds = round(trained.train_seconds + time.perf_counter() - started, 3)
        row.extra = extra + (f";n_fit_vectors={len(chosen)}" if row.method == "simcse+whitening" else "")
        if row.method == BEST_VALID_METHOD and best:
            row.extra += f";chosen_on={best['label']};best_step={best['step']};best_valid_spearman={best['valid_spearman']:.6f}"


def _best_valid_facts(best_folder: Path) -> dict:
    """{"step", "valid_spearman", "label"} of a best-valid folder, or {} if there is none."""
    import json

    path = best_folder / "best_valid.json"
    if not path.is_file():
        return {}
    facts = json.loads(path.read_text(encoding="utf-8"))
    facts.setdefault("label", "valid")
    return facts


def _publish_curve(curve_csv: Path, curves_dir: Path, stem: str, title: str) -> None:
    """Copy a run's curve.csv beside the results as curves/<stem>.csv and draw curves/<stem>.png."""
    from stseval.common.fileio import write_text_atomic
    from stseval.report.grids import plot_training_curve

    target = curves_dir / f"{stem}.csv"
    write_text_atomic(curve_csv.read_text(encoding="utf-8"), target)
    plot_training_curve(target, target.with_suffix(".png"), title)


def _run_folder_name(model: str, task: str, pooling: str, rate: float, seed: int, loss: str, batch_size: int,
                     learning_rate: float, epochs: int) -> str:
    """<model>-<task>-<pooling>-d<dropout>-s<seed>, plus every setting that differs from Su's defaults."""
    name = f"{_model_slug(model)}-{task}-{pooling}-d{rate:g}-s{seed}"
    for label, value, default in (("loss", loss, "su"), ("b", batch_size, 64), ("lr", learning_rate, 1e-5),
                                  ("e", epochs, 1)):
        if value != default:
            name += f"-{label}{value:g}" if isinstance(value, float) else f"-{label}{value}"
    return name


def _model_slug(model: str) -> str:
    """A --model value as a folder-name part: a path gives its folder name, 'hfl/x' gives 'hfl-x'."""
    return slugify(Path(model).name if Path(model).exists() else model) or "model"
