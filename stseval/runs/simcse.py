"""The `stseval simcse-train` queue: for each (task, pooling, dropout) cell, score before, train, score after.

A cell is one SimCSE run. For each one not yet in the results file:

1. "before": the base model's raw vectors on the test split (method `raw`; once per task and pooling);
2. train unsupervised SimCSE (stseval/methods/simcse/) on the task's sentences, labels unused, and save the
   model to `runs/simcse/<model>-<task>-<pooling>-d<dropout>-s<seed>/` (safetensors, sentence-
   transformers folder, README model card); an interrupted training resumes from its last checkpoint;
   once the cell is scored the folder keeps only the model(s) `--keep` names (default: the best on valid);
3. "after": the trained model in eval mode (method `simcse`, with `dropout` and `train_on` filled);
4. with `then_whiten`, the SimCSE vectors whitened with statistics fitted on the training sentences
   (method `simcse+whitening`).

The run follows stseval/runs/plan.py: per task one unit of raw cells and one unit per trained cell.
Rows go to the long-format results file as soon as a cell is done (results.ResultsFile), so Ctrl-C
loses at most the cell in progress, and a re-run skips finished cells. Training curves are copied beside
the results (curves/<run>.csv); stseval.report.drawing draws them.

Our data has no train split for ATEC, LCQMC and PAWSX, so `--train-on all-available` (the default,
like Su's train+valid+test) means valid+test there: the model sees the test sentences, without
labels, as in Su's runs. Every row's `train_on` says which sentences trained the model, e.g.
"valid+test (10000 of 80000 sentences)".

Multi-GPU: run the same command under `torchrun --nproc_per_node N -m stseval.cli simcse-train ...`
(or `accelerate launch`); every process trains its share of each global batch (see
`simcse.train_simcse`) and only rank 0 evaluates and writes rows.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.fileio import write_text_atomic
from stseval.common.settings import Dropout, Pooling, pooling_names
from stseval.data.tasks import TaskSpec, data_fingerprint, file_sha256, load_pairs, read_sentence_lines
from stseval.encoders.cache import EmbeddingCache
from stseval.encoders.protocol import can_pool
from stseval.evaluation.metrics import bootstrap_ci, cosine_scores, paired_difference_ci, spearman, undefined_reason
from stseval.evaluation.scoring import encode_splits, sample_pairs, score_pairs, split_label
from stseval.evaluation.validation import ValidationPairs
from stseval.methods.simcse import (
    BEST_VALID_DIR,
    CURVE_FILE,
    SimcseSettings,
    default_max_sentences,
    ensure_writable,
    prune_run,
    select_sentences,
    train_simcse,
)
from stseval.methods.whitening import apply_whitening, fit_whitening_basis
from stseval.options import BEST_VALID_METHOD
from stseval.runs.plan import Cell, RunOutput, Unit, fill_score, now, planned_row, run_units
from stseval.runs.results import (
    UNDEFINED,
    ResultRow,
    ResultsFile,
    cell_key,
    library_versions,
    machine_description,
    provenance,
)
from stseval.runs.specs import CosentRun, FitSource, SimcseRun, available_splits
from stseval.runs.whiten import slugify

if TYPE_CHECKING:
    from stseval.encoders.encoder import Encoder  # imports torch: run_simcse imports it when it runs


MINUS_RAW = "spearman_cosine_minus_raw"
"""Metric of a paired difference row: Spearman of the method minus Spearman of raw on the same test pairs."""

MINUS_SIMCSE = "spearman_cosine_minus_simcse"
"""Metric of simcse+whitening's paired difference row against simcse (end of epoch)."""


def training_sentences(spec: TaskSpec, train_on: FitSource, data_dir: Path) -> tuple[list[str], str]:
    """Every training sentence of `train_on`, in file order (no dedupe), and a name for them.

    Args:
        spec: the task.
        train_on: all-available (every split file present: train+valid+test where train exists), a
            split, or a file with one sentence per line (specs.parse_train_on checked it exists).
        data_dir: the data folder.
    Returns:
        (sentences, source) with source like "valid+test" or "file:wiki.txt"; each pair gives its
        sentence1 and its sentence2.
    Raises:
        StsevalError naming --train-on for an empty or unreadable file, or no sentences.
    """
    if train_on.kind == "file":
        return read_sentence_lines(train_on.path, "--train-on"), train_on.label
    splits = train_on.own_splits(spec, data_dir)
    sentences = [text for split in splits for pair in load_pairs(spec, split, data_dir)
                 for text in (pair.sentence1, pair.sentence2)]
    if not sentences:
        raise StsevalError(f"--train-on: {spec.name} has no training sentences in {data_dir}")
    return sentences, "+".join(splits)


@dataclass
class _Job:
    """What every unit of a simcse-train run shares."""

    run: SimcseRun
    encoder: Encoder
    device: str
    cache: EmbeddingCache
    base: dict  # provenance fields of every row
    main_process: bool
    log: Callable[[str], None]
    curves: list[tuple[Path, str]] = field(default_factory=list)  # (curves/<run>.csv, title) to draw


@dataclass(frozen=True)
class _TaskPlan:
    """One task's training sentences and validation pairs, shared by its cells."""

    spec: TaskSpec
    chosen: list[str]  # the training sentences after the seeded cap
    train_label: str  # e.g. "valid+test (10000 of 80000 sentences)"
    data_sha256: str
    validation: ValidationPairs | None


def run_simcse(run: SimcseRun, log: Callable[[str], None] = print) -> RunOutput:
    """Score, train and re-score every (task, pooling, dropout) cell not yet in the results file.

    The raw cells of a task are scored first (once per pooling, one encoding pass), then each cell is
    trained (resuming an interrupted training from its checkpoint) and scored: `simcse`, its paired
    difference to raw, `simcse-best-valid` with a training curve, `simcse+whitening` with then_whiten.

    Returns:
        the results CSV, the rows computed now and the training curves for
        stseval.report.drawing.write_curve_plots.
    Raises:
        StsevalError naming the option: an unwritable --out or --runs-dir, a pooling the model lacks,
        an empty --train-on file, rows of other data or weights in --out (before any training).
    """
    ensure_writable(run.out_dir, "--out")
    ensure_writable(run.runs_dir / "simcse", "--runs-dir")
    encoder, device, base = load_base_model(run, "simcse-train")
    job = _Job(run, encoder, device, EmbeddingCache(), base, is_main_process(), log)
    units = [unit for spec in run.tasks for unit in _plan_task(job, spec)]
    results = ResultsFile(run.results_path)
    if job.main_process:
        pending = [unit for unit in units
                   if any(not all(results.has(cell_key(row)) for row in cell.rows) for cell in unit.cells)]
        log(work_estimate(run, pending))
    computed = run_units(results, units, lambda unit, cells: _compute(job, unit, cells), log)
    return RunOutput(run.results_path, computed, curves=tuple(job.curves))


def work_estimate(run: SimcseRun, units: list[Unit]) -> str:
    """One line said before the queue starts: training steps and about how many sentences are encoded.

    Per pending trained cell: ceil(sentences / batch) x epochs steps; the scored pairs' two sides once for the
    trained model and once for the best-on-valid one (and the training sentences with --then-whiten); the
    curve's valid pairs at step 0 and every --eval-steps. Per task with pending raw cells: the scored pairs once.
    """
    steps = cells = encoded = 0
    for unit in units:
        task: _TaskPlan = unit.context
        n_pairs = len(load_pairs(task.spec, run.split, run.data_dir))
        sides = 2 * min(n_pairs, run.max_eval_pairs or n_pairs)
        if unit.cells[0].rows[0].method == "raw":
            encoded += sides
            continue
        cell_steps = -(-len(task.chosen) // run.training.batch_size) * run.training.epochs
        cells, steps = cells + 1, steps + cell_steps
        encoded += sides + (len(task.chosen) if run.then_whiten else 0)
        if task.validation is not None:
            encoded += sides + 2 * len(task.validation.gold) * (cell_steps // run.eval_steps + 1)
    if not units:
        return "simcse-train: every cell is done"
    return (f"simcse-train: {cells} model(s) to train, {steps:,} steps of {run.training.batch_size} sentences in all "
            f"(each encoded twice); about {encoded:,} sentences to encode for scoring and the training curves")


def load_base_model(run: SimcseRun | CosentRun, command: str) -> tuple[Encoder, str, dict]:
    """The transformer a training run starts from, its device, and the provenance fields of every row.

    Sets torch's threads for the whole run (a CLI process: nothing to restore) and the device (cuda when
    visible unless --device says otherwise).

    Raises:
        StsevalError naming --model for a sentence-vector encoder (training changes a transformer's
        weights) or --pooling for a pooling the model lacks.
    """
    from stseval.encoders.encoder import Encoder, load_encoder
    from stseval.encoders.precision import set_threads

    device = run.encode.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = set_threads(run.encode.threads)
    encoder = load_encoder(run.encode.model, device=device, precision=run.encode.precision)
    if not isinstance(encoder, Encoder):
        raise StsevalError(f"{command} needs a transformer model folder; --model {run.encode.model} "
                           "gives sentence vectors only")
    unsupported = pooling_names(p for p in run.encode.poolings if not can_pool(encoder, p))
    if unsupported:
        raise StsevalError(f"--pooling {','.join(unsupported)}: not available for {encoder.name} "
                           f"(trained pooler: {encoder.has_pooler}, layers: {encoder.n_layers})")
    base = {key: value for key, value in provenance(run.seed).items() if key != "seed"}
    return encoder, device, dict(base, machine=machine_description(), torch_threads=str(threads))


def is_main_process() -> bool:
    """False in every process but rank 0 under torchrun / accelerate launch: only rank 0 scores and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def _plan_task(job: _Job, spec: TaskSpec) -> list[Unit]:
    """A task's units: its raw cells (one per pooling), then one per (pooling, dropout) training."""
    run, encoder = job.run, job.encoder
    all_sentences, source = training_sentences(spec, run.train_on, run.data_dir)
    # specs.parse_max_sentences leaves one string, "auto"
    cap = default_max_sentences(spec.name) if isinstance(run.max_sentences, str) else run.max_sentences
    chosen = select_sentences(all_sentences, cap, run.seed)
    if run.train_on.kind == "file":
        fingerprint = f"{data_fingerprint(spec, [run.split], run.data_dir)}+{file_sha256(run.train_on.path)[:12]}"
    else:
        fingerprint = data_fingerprint(spec, [run.split, *source.split("+")], run.data_dir)
    task = _TaskPlan(spec, chosen, f"{source} ({len(chosen)} of {len(all_sentences)} sentences)", fingerprint,
                     _validation_pairs(run, spec))
    common = dict(model=encoder.name, model_fingerprint=encoder.fingerprint, task=spec.name,
                  split=split_label(run.split, run.max_eval_pairs), prefix=run.encode.prefix,
                  data_sha256=fingerprint, seed=run.seed, max_length=str(spec.max_length), **job.base)
    raw = Unit(f"{encoder.name} {spec.name} raw",
               [Cell([planned_row(common, pooling=str(p), method="raw", metric="spearman_cosine")])
                for p in run.encode.poolings], context=task)
    training = run.training
    trained_common = dict(common, train_on=task.train_label, loss=training.loss, batch_size=str(training.batch_size),
                          learning_rate=f"{training.learning_rate:g}", epochs=str(training.epochs))
    cells = [Unit(f"{encoder.name} {spec.name} {pooling} dropout={rate} seed={run.seed}",
                  [Cell(_planned_rows(pooling, rate, trained_common, task.validation is not None, run.then_whiten),
                        (pooling, rate))], context=task)
             for pooling in run.encode.poolings for rate in run.dropouts]
    return [raw, *cells]


def _compute(job: _Job, unit: Unit, cells: list[Cell]) -> list[ResultRow]:
    """Score a task's raw cells, or train and score one SimCSE cell; only rank 0 scores and writes."""
    if cells[0].rows[0].method == "raw":
        return _score_raw(job, unit.context, [cell.rows[0] for cell in cells]) if job.main_process else []
    return _train_and_score(job, unit, cells[0])


def _score_raw(job: _Job, task: _TaskPlan, rows: list[ResultRow]) -> list[ResultRow]:
    """Score the base model (method raw) for the given poolings, in one encoding pass."""
    run, started = job.run, time.perf_counter()
    evaluated = encode_test(job.run, task.spec, job.encoder, [pooling_of(run, row) for row in rows], job.cache)
    for row in rows:
        score = score_pairs(evaluated.vectors_a[row.pooling], evaluated.vectors_b[row.pooling],
                            evaluated.gold_scores, run.n_resamples, run.seed)
        fill_score(row, score, started)
    return rows


def pooling_of(run: SimcseRun | CosentRun, row: ResultRow) -> Pooling:
    """The run's `Pooling` value a planned row names (rows hold `str(pooling)`): looked up, not parsed again."""
    return {str(pooling): pooling for pooling in run.encode.poolings}[row.pooling]


def encode_test(run: SimcseRun | CosentRun, spec: TaskSpec, encoder, poolings: list[Pooling], cache):
    """The scored split of a task (or its seeded sample), encoded under the poolings (vectors keyed by name)."""
    return encode_splits(encoder, spec, [run.split], poolings, run.data_dir, prefix=run.encode.prefix,
                         batch_size=run.encode.batch_size, cache=cache, show_progress=run.encode.show_progress,
                         max_pairs=run.max_eval_pairs, sample_seed=run.seed)[run.split]


def _train_and_score(job: _Job, unit: Unit, cell: Cell) -> list[ResultRow]:
    """Train one cell's model (or reuse its finished folder), then fill its rows."""
    run, task, (pooling, rate) = job.run, unit.context, cell.setting
    training = run.training
    settings = SimcseSettings(pooling=pooling, dropout=rate, loss=training.loss,
                              batch_size=training.batch_size, learning_rate=training.learning_rate,
                              epochs=training.epochs, max_length=task.spec.max_length, seed=run.seed,
                              prefix=run.encode.prefix, checkpoint_steps=training.checkpoint_steps,
                              precision=run.encode.precision)
    run_dir = run.runs_dir / "simcse" / _run_folder_name(run, task.spec.name, pooling, rate)
    job.log(f"{unit.label}: training on {task.train_label} -> {run_dir}")
    card = {"task": task.spec.name, "train_on": task.train_label, "data_dir": str(run.data_dir),
            "data_sha256": task.data_sha256, "stseval_version": str(job.base["stseval_version"]),
            "git_commit": str(job.base["git_commit"]), "versions": library_versions()}
    trained = train_simcse(job.encoder.folder, task.chosen, settings, run_dir, base_model=run.encode.model,
                           base_fingerprint=job.encoder.fingerprint, card_facts=card,
                           show_progress=run.encode.show_progress, validation=task.validation)
    if not job.main_process:
        return []
    trained.model = None  # the training model: scoring loads the saved folders, so free it (peak memory)
    gc.collect()
    rows = cell.rows
    _score_trained(job, task, trained, rows)
    kept = prune_run(trained.folder, run.keep)
    for row in rows:  # when this cell finished, not when the queue started
        row.created_at = now()
    if task.validation is not None and (trained.folder / CURVE_FILE).is_file():
        target = run.out_dir / "curves" / f"{run_dir.name}.csv"
        write_text_atomic((trained.folder / CURVE_FILE).read_text(encoding="utf-8"), target)
        job.curves.append((target, unit.label))
    best = next((row for row in rows if row.method == BEST_VALID_METHOD and row.status == "ok"), None)
    # x 100, as the grids print Spearman
    job.log(f"{unit.label}: spearman x 100 {100 * rows[0].value:.2f} ({100 * rows[1].value:+.2f} vs raw) after "
            f"{trained.steps} steps ({trained.sentences_per_s:.1f} sentences/s)"
            + (f"; best on {task.validation.label}: {100 * best.value:.2f}" if best is not None else "")
            + f"; kept in {trained.folder}: {', '.join(kept) or 'no model'} (--keep {run.keep})")
    return rows


def _planned_rows(pooling: Pooling, rate: Dropout, common: dict, with_best_valid: bool,
                  then_whiten: bool) -> list[ResultRow]:
    """The rows one cell produces, values NaN until scored: [simcse, simcse - raw, (best-valid, best-valid - raw),
    (simcse+whitening, simcse+whitening - simcse)]."""
    def row(method: str, metric: str, **more) -> ResultRow:
        return planned_row(common, pooling=str(pooling), method=method, metric=metric, dropout=str(rate), **more)

    rows = [row("simcse", "spearman_cosine"), row("simcse", MINUS_RAW)]
    if with_best_valid:
        rows += [row(BEST_VALID_METHOD, "spearman_cosine"), row(BEST_VALID_METHOD, MINUS_RAW)]
    if then_whiten:
        rows += [row("simcse+whitening", "spearman_cosine", fit_on=common["train_on"]),
                 row("simcse+whitening", MINUS_SIMCSE, fit_on=common["train_on"])]
    return rows


def _validation_pairs(run: SimcseRun, spec: TaskSpec) -> ValidationPairs | None:
    """A seeded sample of the task's valid pairs for the training curve, or None (curve off / no valid split)."""
    curve_pairs, prefix = run.curve_pairs, run.encode.prefix
    if curve_pairs == 0 or "valid" not in available_splits(spec, run.data_dir):
        return None
    every_pair = load_pairs(spec, "valid", run.data_dir)
    sampled = curve_pairs is not None and curve_pairs < len(every_pair)
    pairs = sample_pairs(every_pair, curve_pairs if sampled else None, run.seed)
    return ValidationPairs([prefix + pair.sentence1 for pair in pairs], [prefix + pair.sentence2 for pair in pairs],
                           [float(pair.score) for pair in pairs],
                           label=split_label("valid", curve_pairs if sampled else None), every_steps=run.eval_steps)


def _score_trained(job: _Job, task: _TaskPlan, trained, rows: list[ResultRow]) -> None:
    """Fill a cell's rows: the saved model(s) loaded back in eval mode, scored on the test pairs, paired with raw."""
    started = time.perf_counter()
    scores, raw_scores, gold, trained_fingerprint = _trained_scores(job, task, trained, rows)
    facts = dict(run_dir=str(trained.folder), trained_fingerprint=trained_fingerprint[:12],
                 train_steps=str(trained.steps), final_loss=f"{trained.final_loss:.4f}",
                 sentences_per_s=str(trained.sentences_per_s))
    best = best_valid_facts(trained.folder / BEST_VALID_DIR)
    run = job.run
    for row in rows:
        for name, value in facts.items():
            setattr(row, name, value)
        if row.method not in scores:
            row.status, row.note = "n/a", "no best-valid checkpoint was saved"
            continue
        baseline = None if row.metric == "spearman_cosine" else raw_scores if row.metric == MINUS_RAW \
            else scores["simcse"]
        fill_value(row, scores[row.method], baseline, gold, run)
        row.seconds = round(trained.train_seconds + time.perf_counter() - started, 3)
        if row.method == BEST_VALID_METHOD and best:
            row.chosen_on, row.best_step = str(best["label"]), str(best["step"])
            row.best_valid_spearman = f"{best['valid_spearman']:.6f}"


def fill_value(row: ResultRow, scores: np.ndarray, baseline: np.ndarray | None, gold: np.ndarray,
               run: SimcseRun | CosentRun) -> None:
    """Put the Spearman of `scores` (or its paired difference to `baseline`'s) and its interval into a row,
    or status `undefined` with the reason when there is no correlation to report (e.g. constant gold)."""
    row.n_pairs = len(gold)
    undefined = undefined_reason(scores, gold) or ("" if baseline is None else undefined_reason(baseline, gold))
    if undefined:
        row.status, row.note = UNDEFINED, undefined
    else:
        row.value, row.ci_low, row.ci_high = value_and_interval(scores, baseline, gold, run)


def value_and_interval(scores: np.ndarray, baseline: np.ndarray | None, gold: np.ndarray,
                       run: SimcseRun | CosentRun) -> tuple[float, float, float]:
    """Spearman of `scores` with its bootstrap interval, or its paired difference to `baseline`'s."""
    if baseline is None:
        low, high = bootstrap_ci(scores, gold, run.n_resamples, seed=run.seed) if run.n_resamples else (np.nan, np.nan)
        return spearman(scores, gold), low, high
    if run.n_resamples:
        return paired_difference_ci(scores, baseline, gold, run.n_resamples, seed=run.seed)
    return spearman(scores, gold) - spearman(baseline, gold), np.nan, np.nan


def _trained_scores(job: _Job, task: _TaskPlan, trained,
                    rows: list[ResultRow]) -> tuple[dict, np.ndarray, np.ndarray, str]:
    """({method: (n,) cosine scores}, raw cosine scores, gold, trained model fingerprint) on the scored pairs."""
    from stseval.encoders.encoder import encode, load_encoder

    run, pooling = job.run, pooling_of(job.run, rows[0])
    name = rows[0].pooling  # str(pooling): what the encoded vectors are keyed by

    def predicted(encoder_to_score, use_cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        evaluated = encode_test(job.run, task.spec, encoder_to_score, [pooling], use_cache)
        return evaluated.vectors_a[name], evaluated.vectors_b[name], evaluated.gold_scores

    raw_a, raw_b, gold = predicted(job.encoder, job.cache)  # cached by _score_raw
    trained_encoder = load_encoder(str(trained.folder), device=job.device, precision=run.encode.precision)
    vectors_a, vectors_b, _ = predicted(trained_encoder, None)
    scores = {"simcse": cosine_scores(vectors_a, vectors_b)}
    if any(row.method == "simcse+whitening" for row in rows):
        fit_vectors = encode(trained_encoder, task.chosen, [pooling], max_length=task.spec.max_length,
                             prefix=run.encode.prefix, batch_size=run.encode.batch_size,
                             show_progress=run.encode.show_progress)[name]
        basis = fit_whitening_basis(fit_vectors)
        whitening = basis.whitening()
        scores["simcse+whitening"] = cosine_scores(apply_whitening(vectors_a, whitening.mu, whitening.kernel),
                                                   apply_whitening(vectors_b, whitening.mu, whitening.kernel))
        for row in rows:
            if row.method == "simcse+whitening":
                row.n_fit, row.fit_rank = basis.n_fit, basis.rank
    fingerprint = trained_encoder.fingerprint
    del trained_encoder  # one trained model in memory at a time
    gc.collect()
    best_folder = trained.folder / BEST_VALID_DIR
    if any(row.method == BEST_VALID_METHOD for row in rows) and best_folder.is_dir():
        best_a, best_b, _ = predicted(load_encoder(str(best_folder), device=job.device,
                                                   precision=run.encode.precision), None)
        scores[BEST_VALID_METHOD] = cosine_scores(best_a, best_b)
    return scores, cosine_scores(raw_a, raw_b), gold, fingerprint


def best_valid_facts(best_folder: Path) -> dict:
    """{"step", "valid_spearman", "label"} of a best-valid folder, or {} if there is none."""
    import json

    path = best_folder / "best_valid.json"
    if not path.is_file():
        return {}
    facts = json.loads(path.read_text(encoding="utf-8"))
    facts.setdefault("label", "valid")
    return facts


def _run_folder_name(run: SimcseRun, task: str, pooling: Pooling, rate: Dropout) -> str:
    """<model>-<task>-<pooling>-d<dropout>-s<seed>, plus every setting that differs from Su's defaults."""
    name = f"{model_slug(run.encode.model)}-{task}-{pooling}-d{rate}-s{run.seed}"
    training = run.training
    for label, value, default in (("loss", training.loss, "su"), ("b", training.batch_size, 64),
                                  ("lr", training.learning_rate, 1e-5), ("e", training.epochs, 1),
                                  ("", run.encode.precision, "fp32")):
        if value != default:
            name += f"-{label}{value:g}" if isinstance(value, float) else f"-{label}{value}"
    return name


def model_slug(model: str) -> str:
    """A --model value as a folder-name part: a path gives its folder name, 'hfl/x' gives 'hfl-x'."""
    return slugify(Path(model).name if Path(model).exists() else model) or "model"
