"""What each command does once its options are parsed: call the library, write the outputs, and return
what the command prints. Typer-free, so stseval/cli.py stays declarations and one call per command.

Each function takes a spec from stseval.runs.specs (or the few plain values of a small command), raises
StsevalError for the user's mistakes, and reports progress through `log` (one line of text per call).
Heavy modules (torch, faiss, pandas, matplotlib) are imported inside the functions, after the options
have been checked, so a bad option still fails before they load.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stseval.common.errors import StsevalError

if TYPE_CHECKING:
    from stseval.runs.specs import CosentRun, SimcseRun, SweepRun, WhitenRun
    from stseval.runs.specs.index import IndexBuild, IndexSearch
    from stseval.runs.specs.report import ReportSpec

Log = Callable[[str], None]


def task_table(data_dir: Path | None, validate: bool) -> tuple[str, StsevalError | None]:
    """`stseval tasks`: the status table of every split file, and the problem to exit 2 on after showing it
    (the first file that does not parse, else the first split with one label for every pair), or None."""
    from stseval.data.status import constant_label_problem, format_task_status, task_status
    from stseval.data.tasks import resolve_data_dir

    folder = resolve_data_dir(data_dir)
    status = task_status(folder, validate=validate)
    table = format_task_status(status, folder)
    broken = [row for row in status if row.parsed is False]
    if broken:
        return table, StsevalError(f"{len(broken)} file(s) do not parse; the first: {broken[0].problem}")
    constant = [row for row in status if row.constant_label is not None]
    if constant:
        return table, StsevalError(f"{len(constant)} split(s) have one label for every pair; the first: "
                                   f"{constant_label_problem(constant[0])}")
    return table, None


def model_lines() -> list[str]:
    """`stseval models`: one line per encoder available offline: name, status, folder."""
    from stseval.encoders.encoder import list_models

    return [f"{entry['name']:40s} {entry['status']:12s} {entry['folder']}" for entry in list_models()]


def whiten(run: WhitenRun, log: Log) -> str:
    """`stseval whiten`: score every cell (resuming), write the grid beside the results; returns its markdown."""
    from stseval.report.write import write_run_grid
    from stseval.runs.whiten import run_whiten

    output = run_whiten(run, log=log)
    return write_run_grid(output.results, run.out_dir, run.split, [spec.name for spec in run.tasks])


def simcse_train(run: SimcseRun, log: Log) -> str | None:
    """`stseval simcse-train`: train and score every cell (resuming), draw the training curves, write the
    grid; returns its markdown, or None in a torchrun process other than rank 0 (which writes nothing)."""
    from stseval.runs.simcse import run_simcse

    return _train_and_write(run, "simcse", run_simcse, log)


def cosent_train(run: CosentRun, log: Log) -> str | None:
    """`stseval cosent-train`: train and score every cell (resuming), draw the valid curves, write the grid;
    returns its markdown, or None in a torchrun process other than rank 0."""
    from stseval.runs.cosent import run_cosent

    return _train_and_write(run, "cosent", run_cosent, log)


def _train_and_write(run: SimcseRun | CosentRun, kind: str, train: Callable, log: Log) -> str | None:
    """The training commands' shared tail: library messages to RUNS/KIND/library.log, the run, then (rank 0
    only) one PNG per training curve and the run's grid."""
    from stseval.common.library_log import libraries_to_log
    from stseval.evaluation.scoring import split_label
    from stseval.report.drawing import write_curve_plots
    from stseval.report.write import write_run_grid
    from stseval.runs.simcse import is_main_process

    library_log = run.runs_dir / kind / "library.log"
    log(f"stseval: library messages (load reports, warnings) go to {library_log}")
    with libraries_to_log(library_log):
        output = train(run, log=log)
    if not is_main_process():
        return None
    write_curve_plots(output.curves)
    return write_run_grid(output.results, run.out_dir, split_label(run.split, run.max_eval_pairs),
                          [spec.name for spec in run.tasks])


def index_build(spec: IndexBuild) -> str:
    """`stseval index build`: encode, maybe whiten, index and save the corpus; returns a one-line summary."""
    from stseval.runs.retrieval import build

    meta = build(spec.model, spec.index_dir, task=spec.task, split=spec.split, sentences_file=spec.sentences_file,
                 data_dir=spec.data_dir, pooling=spec.pooling, prefix=spec.prefix, max_length=spec.max_length,
                 whitening_file=spec.whitening_file, fit_whitening_dims=spec.fit_whitening_dims,
                 factory=spec.factory, search_params=spec.search_params, batch_size=spec.batch_size, seed=spec.seed,
                 allow_low_rank=spec.allow_low_rank, precision=spec.precision, threads=spec.threads)
    whitened = f", whitened to {meta.whitening['n_components']} dims" if meta.whitening else ""
    return f"{spec.index_dir}: {meta.n_vectors} sentences of {meta.corpus}, {meta.dims}-d {meta.factory}{whitened}"


def index_search(spec: IndexSearch) -> str:
    """`stseval index search`: each query's nearest corpus sentences, as text."""
    from stseval.runs.retrieval import format_neighbours, search_index

    results = search_index(spec.index_dir, spec.queries, spec.top_k, model=spec.model, pooling=spec.pooling,
                           prefix=spec.prefix, whitening_file=spec.whitening_file, search_params=spec.search_params,
                           precision=spec.precision, threads=spec.threads)
    return format_neighbours(list(spec.queries), results)


def index_sweep(run: SweepRun, log: Log) -> list[Path]:
    """`stseval index sweep`: score every cell (resuming) and draw the plot; returns the files written."""
    from stseval.report.drawing import write_sweep_plot
    from stseval.runs.retrieval import SWEEP_PNG, sweep

    output = sweep(run, log=log)
    plot = write_sweep_plot(output.results, run.out_dir / SWEEP_PNG, output.planned)
    return [output.results, *([plot] if plot is not None else [])]


def export(model: str, pooling: str, out: Path, **settings) -> str:
    """`stseval export`: write the folder (see stseval.report.export.export); returns a one-line summary.

    out must be new or empty, checked before the model loads; settings are export's keyword arguments.
    """
    from stseval.report.export import check_out_empty

    check_out_empty(out)
    from stseval.report.export import export as export_setting

    done = export_setting(model, pooling, out, **settings)
    return f"{done.folder}: {done.kind} folder, {done.model} {done.pooling}, {done.dims} dims"


def report(spec: ReportSpec, log: Log) -> list[Path]:
    """`stseval report`: mteb result files, a study plot, or grids of the rows; returns the files written."""
    paths, filters = list(spec.paths), list(spec.filters)
    if spec.output_format == "mteb":
        from stseval.report.mteb_files import write_report_mteb

        return write_report_mteb(paths, spec.out, filters=filters, strict=spec.strict)
    if spec.plot is not None:
        from stseval.report.plots import write_plot

        return write_plot(spec.plot, paths, spec.out, name=spec.name, split=spec.split, filters=filters,
                          strict=spec.strict)
    from stseval.report.write import write_report

    return write_report(paths, spec.out, rows=list(spec.rows) if spec.rows else None, cols=list(spec.cols),
                        metrics=list(spec.metrics), split=spec.split, best=spec.best, ci=spec.ci, filters=filters,
                        reference=list(spec.reference), strict=spec.strict, name=spec.name,
                        over_seeds=spec.over_seeds, log=lambda message: log(f"stseval: {message}"))


def cache_summary() -> str:
    """`stseval cache size`: each cached key with its shards, vectors and size."""
    from stseval.encoders.cache import default_cache_root, format_cache_summary, summarize_cache

    return format_cache_summary(summarize_cache(), default_cache_root())


def cache_verify() -> tuple[list[str], bool]:
    """`stseval cache verify`: a line per corrupt shard and a summary line; True when every shard verified."""
    from stseval.encoders.cache import default_cache_root, summarize_cache, verify_cache

    problems = verify_cache()
    n_shards = sum(summary.n_shards for summary in summarize_cache())
    summary = (f"{default_cache_root()}: {n_shards - len(problems)} of {n_shards} shard(s) verified"
               + (f", {len(problems)} corrupt: run `stseval cache clean`" if problems else ""))
    return [*(f"{record_path}: {problem}" for record_path, problem in problems), summary], not problems


def cache_clean(dry_run: bool) -> list[str]:
    """`stseval cache clean`: delete (or with dry_run list) orphan and corrupt files; a line each, then a count."""
    from stseval.encoders.cache import clean_cache, default_cache_root

    removed = clean_cache(dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    return [*(str(path) for path in removed), f"{default_cache_root()}: {verb} {len(removed)} file(s)"]
