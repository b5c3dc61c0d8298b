"""The `stseval cosent-train` queue: train CoSENT on a task's labelled train pairs, score on every task.

CoSENT (stseval/methods/cosent.py) is supervised: it needs a train split with labels, which our data
has for BQ (100,000 pairs) and STS-B (5,231) only. One training per (train task, pooling, seed) is
scored on the test split of every task in `--tasks`, so a model trained on BQ (bank customer questions)
is also scored on ATEC and LCQMC (question matching too), PAWSX (word order) and STS-B: cross-task
transfer. Rows:

- `raw`: the base model (once per task and pooling; the same cells as whiten / simcse-train);
- `cosent` (end of training) and its paired difference to raw on the same test pairs;
- `cosent-best-valid`: the checkpoint that scored best on a seeded sample of the train task's valid
  split (never on test), and its difference to raw;
- with `--then-whiten`, `cosent+whitening`: the trained vectors whitened with statistics fitted on (a
  seeded sample of at most 10,000 of) the training sentences, and its difference to cosent.

`train_on` names the train task, its split, pair count and file checksum, e.g. "BQ:train (100000 pairs,
sha256 1f2e3d4c5b6a)": it is the setting of a trained row, the same for every task it is scored on.
The run follows stseval/runs/plan.py, so rows land as soon as a training's cells are scored and a
re-run skips finished cells; an interrupted training resumes from its last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stseval.common.fileio import write_text_atomic
from stseval.common.settings import Pooling
from stseval.data.tasks import TaskSpec, available_splits, data_fingerprint, file_sha256, load_pairs, split_path
from stseval.encoders.cache import EmbeddingCache
from stseval.evaluation.metrics import cosine_scores
from stseval.evaluation.scoring import sample_pairs, score_pairs, split_label
from stseval.evaluation.validation import ValidationPairs
from stseval.methods.cosent import CosentSettings, train_cosent
from stseval.methods.simcse import BEST_VALID_DIR, CURVE_FILE, ensure_writable
from stseval.methods.whitening import apply_whitening, fit_whitening_basis
from stseval.options import COSENT_BEST_VALID_METHOD, COSENT_METHOD
from stseval.runs.plan import Cell, RunOutput, Unit, fill_score, now, planned_row, run_units
from stseval.runs.results import ResultRow, ResultsFile, library_versions
from stseval.runs.simcse import (
    MINUS_RAW,
    best_valid_facts,
    encode_test,
    fill_value,
    is_main_process,
    load_base_model,
    model_slug,
    pooling_of,
)
from stseval.runs.specs import CosentRun

COSENT = COSENT_METHOD
BEST_VALID = COSENT_BEST_VALID_METHOD
THEN_WHITENED = "cosent+whitening"
MINUS_COSENT = "spearman_cosine_minus_cosent"
"""Metric of cosent+whitening's paired difference row against cosent (end of training)."""

MAX_FIT_SENTENCES = 10_000
"""cosent+whitening fits on a seeded sample of at most this many training sentences (BQ has 200,000)."""


@dataclass(frozen=True)
class _Training:
    """One train task's pairs, validation sample and row label, shared by its poolings."""

    spec: TaskSpec
    texts_a: list[str]
    texts_b: list[str]
    gold: list[float]
    train_label: str  # the rows' train_on
    validation: ValidationPairs | None


@dataclass
class _Job:
    run: CosentRun
    encoder: object
    device: str
    cache: EmbeddingCache
    base: dict
    main_process: bool
    log: Callable[[str], None]
    curves: list[tuple[Path, str]] = field(default_factory=list)


def run_cosent(run: CosentRun, log: Callable[[str], None] = print) -> RunOutput:
    """Score raw, train CoSENT per (train task, pooling) and score the trained models on every task.

    Returns:
        the results CSV, the rows computed now and the training curves.
    Raises:
        StsevalError naming the option: an unwritable --out or --runs-dir, a pooling the model lacks,
        rows of other data or weights in --out (before any training).
    """
    ensure_writable(run.out_dir, "--out")
    ensure_writable(run.runs_dir / "cosent", "--runs-dir")
    encoder, device, base = load_base_model(run, "cosent-train")
    job = _Job(run, encoder, device, EmbeddingCache(), base, is_main_process(), log)
    units = [_raw_unit(job, spec) for spec in run.tasks]
    for train_spec in run.train_tasks:
        training = _training(run, train_spec)
        units += [_training_unit(job, training, pooling) for pooling in run.encode.poolings]
    computed = run_units(ResultsFile(run.results_path), units, lambda unit, cells: _compute(job, unit, cells), log)
    return RunOutput(run.results_path, computed, curves=tuple(job.curves))


def _common(job: _Job, spec: TaskSpec) -> dict:
    """The fields every row of an evaluated task shares.

    data_sha256 covers every split file the scored task has, as whiten and simcse-train rows do, so the raw
    cells and the report line CoSENT up with those runs' rows; the training file is named in train_on.
    """
    run = job.run
    return dict(model=job.encoder.name, model_fingerprint=job.encoder.fingerprint, task=spec.name,  # type: ignore[attr-defined]
                split=split_label(run.split, run.max_eval_pairs), prefix=run.encode.prefix,
                data_sha256=data_fingerprint(spec, available_splits(spec, run.data_dir), run.data_dir), seed=run.seed,
                max_length=str(spec.max_length), **job.base)


def _raw_unit(job: _Job, spec: TaskSpec) -> Unit:
    cells = [Cell([planned_row(_common(job, spec), pooling=str(pooling), method="raw", metric="spearman_cosine")])
             for pooling in job.run.encode.poolings]
    return Unit(f"{job.encoder.name} {spec.name} raw", cells, context=spec)  # type: ignore[attr-defined]


def _training(run: CosentRun, spec: TaskSpec) -> _Training:
    """The train task's labelled pairs (capped by --max-train-pairs), label and validation sample."""
    every_pair = load_pairs(spec, "train", run.data_dir)
    pairs = sample_pairs(every_pair, run.max_train_pairs, run.seed)
    checksum = file_sha256(split_path(spec, "train", run.data_dir))[:12]
    count = f"{len(pairs)} of {len(every_pair)}" if len(pairs) < len(every_pair) else str(len(pairs))
    label = f"{spec.name}:train ({count} pairs, sha256 {checksum})"
    validation = None
    if run.curve_pairs != 0 and "valid" in spec.files:
        every_valid = load_pairs(spec, "valid", run.data_dir)
        sampled = run.curve_pairs is not None and run.curve_pairs < len(every_valid)
        chosen = sample_pairs(every_valid, run.curve_pairs if sampled else None, run.seed)
        prefix = run.encode.prefix
        validation = ValidationPairs([prefix + pair.sentence1 for pair in chosen],
                                     [prefix + pair.sentence2 for pair in chosen],
                                     [float(pair.score) for pair in chosen],
                                     label=f"{spec.name}:" + split_label("valid", run.curve_pairs if sampled else None),
                                     every_steps=run.eval_steps)
    return _Training(spec, [pair.sentence1 for pair in pairs], [pair.sentence2 for pair in pairs],
                     [float(pair.score) for pair in pairs], label, validation)


def _training_unit(job: _Job, training: _Training, pooling: Pooling) -> Unit:
    """One training (train task x pooling) and its cells on every evaluated task."""
    run = job.run
    cells = []
    for spec in run.tasks:
        common = dict(_common(job, spec), train_on=training.train_label, loss=COSENT,
                      batch_size=str(run.training.batch_size), learning_rate=f"{run.training.learning_rate:g}",
                      epochs=str(run.training.epochs), dropout=str(run.training.dropout))
        cells.append(Cell(_planned_rows(common, pooling, training.validation is not None, run.then_whiten), spec))
    label = f"{job.encoder.name} cosent on {training.spec.name} {pooling} seed={run.seed}"  # type: ignore[attr-defined]
    return Unit(label, cells, context=(training, pooling),
                detail=f"{len(training.gold)} training pairs x {run.training.epochs} epochs, ")


def _planned_rows(common: dict, pooling: Pooling, with_best_valid: bool, then_whiten: bool) -> list[ResultRow]:
    def row(method: str, metric: str, **more) -> ResultRow:
        return planned_row(common, pooling=str(pooling), method=method, metric=metric, **more)

    rows = [row(COSENT, "spearman_cosine"), row(COSENT, MINUS_RAW)]
    if with_best_valid:
        rows += [row(BEST_VALID, "spearman_cosine"), row(BEST_VALID, MINUS_RAW)]
    if then_whiten:
        rows += [row(THEN_WHITENED, "spearman_cosine", fit_on=common["train_on"]),
                 row(THEN_WHITENED, MINUS_COSENT, fit_on=common["train_on"])]
    return rows


def _compute(job: _Job, unit: Unit, cells: list[Cell]) -> list[ResultRow]:
    if isinstance(unit.context, TaskSpec):
        return _score_raw(job, unit.context, [cell.rows[0] for cell in cells]) if job.main_process else []
    return _train_and_score(job, unit, cells)


def _score_raw(job: _Job, spec: TaskSpec, rows: list[ResultRow]) -> list[ResultRow]:
    run, started = job.run, time.perf_counter()
    evaluated = encode_test(run, spec, job.encoder, [pooling_of(run, row) for row in rows], job.cache)
    for row in rows:
        score = score_pairs(evaluated.vectors_a[row.pooling], evaluated.vectors_b[row.pooling],
                            evaluated.gold_scores, run.n_resamples, run.seed)
        fill_score(row, score, started)
    return rows


def _train_and_score(job: _Job, unit: Unit, cells: list[Cell]) -> list[ResultRow]:
    """Train (or reuse) the unit's model, then fill the rows of every pending evaluated task."""
    from stseval.encoders.encoder import encode, load_encoder

    run = job.run
    training, pooling = unit.context
    spec, key = training.spec, str(pooling)  # key: the name encode() keys the vectors by
    settings = CosentSettings(pooling=pooling, batch_size=run.training.batch_size,
                              learning_rate=run.training.learning_rate, epochs=run.training.epochs,
                              max_length=spec.max_length, seed=run.seed, prefix=run.encode.prefix,
                              dropout=run.training.dropout, checkpoint_steps=run.training.checkpoint_steps,
                              precision=run.encode.precision)
    run_dir = run.runs_dir / "cosent" / _run_folder_name(run, spec.name, pooling)
    job.log(f"{unit.label}: training on {training.train_label} -> {run_dir}")
    card = {"train_on": training.train_label, "data_dir": str(run.data_dir),
            "stseval_version": str(job.base["stseval_version"]), "git_commit": str(job.base["git_commit"]),
            "versions": library_versions()}
    trained = train_cosent(job.encoder.folder, training.texts_a, training.texts_b, training.gold,  # type: ignore[attr-defined]
                           settings, run_dir, base_model=run.encode.model,
                           base_fingerprint=job.encoder.fingerprint, card_facts=card,  # type: ignore[attr-defined]
                           show_progress=run.encode.show_progress, validation=training.validation)
    if not job.main_process:
        return []
    # rows' seconds: the recorded training time (also right for a reused run folder) plus the scoring from here
    started = time.perf_counter()
    precision = run.encode.precision
    trained_encoder = load_encoder(str(trained.folder), device=job.device, precision=precision)
    best_folder = trained.folder / BEST_VALID_DIR
    best_encoder = load_encoder(str(best_folder), device=job.device, precision=precision) \
        if best_folder.is_dir() else None
    basis = whitening = None
    if run.then_whiten:
        rng = np.random.default_rng(run.seed)
        sentences = training.texts_a + training.texts_b
        keep = np.sort(rng.choice(len(sentences), size=min(MAX_FIT_SENTENCES, len(sentences)), replace=False))
        fit_vectors = encode(trained_encoder, [sentences[i] for i in keep], [pooling], max_length=spec.max_length,
                             prefix=run.encode.prefix, batch_size=run.encode.batch_size,
                             show_progress=run.encode.show_progress)[key]
        basis = fit_whitening_basis(fit_vectors)
        whitening = basis.whitening()  # beta = gamma = 1, every direction: Su's whitening
    best = best_valid_facts(best_folder)
    facts = dict(run_dir=str(trained.folder), trained_fingerprint=trained_encoder.fingerprint[:12],
                 train_steps=str(trained.steps), final_loss=f"{trained.final_loss:.4f}",
                 sentences_per_s=str(trained.sentences_per_s))
    rows: list[ResultRow] = []
    for cell in cells:
        eval_spec: TaskSpec = cell.setting
        raw = encode_test(run, eval_spec, job.encoder, [pooling], job.cache)
        gold = raw.gold_scores
        scores = {"raw": cosine_scores(raw.vectors_a[key], raw.vectors_b[key])}
        evaluated = encode_test(run, eval_spec, trained_encoder, [pooling], None)
        vectors_a, vectors_b = evaluated.vectors_a[key], evaluated.vectors_b[key]
        scores[COSENT] = cosine_scores(vectors_a, vectors_b)
        if best_encoder is not None:
            best_vectors = encode_test(run, eval_spec, best_encoder, [pooling], None)
            scores[BEST_VALID] = cosine_scores(best_vectors.vectors_a[key], best_vectors.vectors_b[key])
        if whitening is not None:
            scores[THEN_WHITENED] = cosine_scores(apply_whitening(vectors_a, whitening.mu, whitening.kernel),
                                                  apply_whitening(vectors_b, whitening.mu, whitening.kernel))
        for row in cell.rows:
            for name, value in facts.items():
                setattr(row, name, value)
            row.created_at = now()
            if row.method not in scores:
                row.status, row.note = "n/a", "no best-valid checkpoint was saved"
                continue
            baseline = None if row.metric == "spearman_cosine" else scores["raw"] if row.metric == MINUS_RAW \
                else scores[COSENT]
            fill_value(row, scores[row.method], baseline, gold, run)
            row.seconds = round(trained.train_seconds + time.perf_counter() - started, 3)
            if row.method == THEN_WHITENED and basis is not None:
                row.n_fit, row.fit_rank = basis.n_fit, basis.rank
            if row.method == BEST_VALID and best:
                row.chosen_on, row.best_step = str(best["label"]), str(best["step"])
                row.best_valid_spearman = f"{best['valid_spearman']:.6f}"
        rows.extend(cell.rows)
        cosent_row = cell.rows[0]
        job.log(f"{unit.label} -> {eval_spec.name}: spearman x100 {100 * cosent_row.value:.2f} "
                f"({100 * cell.rows[1].value:+.2f} vs raw)")
    if training.validation is not None and (trained.folder / CURVE_FILE).is_file():
        target = run.out_dir / "curves" / f"{run_dir.name}.csv"
        write_text_atomic((trained.folder / CURVE_FILE).read_text(encoding="utf-8"), target)
        job.curves.append((target, unit.label))
    return rows


def _run_folder_name(run: CosentRun, task: str, pooling: Pooling) -> str:
    """<model>-cosent-<train task>-<pooling>-s<seed>, plus every setting that differs from Su's defaults."""
    name = f"{model_slug(run.encode.model)}-cosent-{task}-{pooling}-s{run.seed}"
    training = run.training
    for label, value, default in (("b", training.batch_size, 32), ("lr", training.learning_rate, 2e-5),
                                  ("e", training.epochs, 5), ("n", run.max_train_pairs, None),
                                  ("", run.encode.precision, "fp32")):
        if value != default:
            name += f"-{label}{value:g}" if isinstance(value, float) else f"-{label}{value}"
    return name
