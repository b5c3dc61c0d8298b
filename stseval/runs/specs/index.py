"""`index build` and `index search` options parsed once into frozen specs (`index sweep`'s is `SweepRun`).

Like the rest of stseval.runs.specs this imports nothing heavy: a bad option fails before torch or faiss
loads, with a message that names the option.

Example:
    >>> spec = parse_index_build(index_dir=Path("runs/stsb-w128"), task="stsb", whiten_dims=128)
    >>> spec.task.name, spec.pooling
    ('STS-B', Pooling(kind='last-avg', layer=None))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stseval import options
from stseval.common.errors import StsevalError
from stseval.common.fileio import check_writable_dir
from stseval.common.settings import Pooling
from stseval.data.tasks import TaskSpec, parse_task_names, resolve_data_dir
from stseval.runs.specs import check_index_sources, check_pairs_parse, check_split, parse_one_pooling


@dataclass(frozen=True)
class IndexBuild:
    """`stseval index build`: one corpus (a task split or a sentence file) encoded, maybe whitened, indexed."""

    index_dir: Path
    model: str = "default"
    task: TaskSpec | None = None  # None: the corpus is sentences_file
    split: str = "test"
    sentences_file: Path | None = None
    data_dir: Path | None = None  # as given; stseval.runs.retrieval.build looks in the usual places for None
    pooling: Pooling = Pooling("last-avg")
    prefix: str = ""
    max_length: int | None = None
    whitening_file: Path | None = None
    fit_whitening_dims: int | None = None  # --whiten-dims: whitening fitted on the corpus itself
    factory: str = "Flat"
    search_params: str = ""
    batch_size: int = 64
    seed: int = 0
    allow_low_rank: bool = False
    precision: str = "fp32"
    threads: int | None = None


def parse_index_build(*, index_dir: Path, task: str | None = None, split: str = "test",
                      sentences: Path | None = None, model: str = "default", pooling: str = "last-avg",
                      prefix: str = "", max_length: int | None = None, whitening: Path | None = None,
                      whiten_dims: int | None = None, factory: str = "Flat", search_params: str = "",
                      data_dir: Path | None = None, batch_size: int = 64, seed: int = 0,
                      allow_low_rank: bool = False, precision: str = "fp32",
                      threads: int | None = None) -> IndexBuild:
    """The `index build` options as an IndexBuild, every value checked that needs no model loaded.

    Raises:
        StsevalError naming the first bad option: --task (unknown, or more than one), --task/--sentences
        (none or both), --whitening/--whiten-dims (both), --pooling, --precision, --threads, --model (a
        missing folder), --sentences/--whitening (a missing file), --whiten-dims (above the model's size),
        --index-dir (not writable), --split (absent for --task), or a data file's bad line (file:line).
    """
    specs = parse_task_names(task, "--task") if task else [None]
    if len(specs) != 1:
        raise StsevalError(f"--task: give one task, got {task!r}")
    check_index_sources(task, sentences, whitening, whiten_dims)
    parsed_pooling = parse_one_pooling(pooling)
    options.check_precision(precision)
    options.check_threads(threads)
    options.check_model_folder(model)
    options.check_file(sentences, "--sentences")
    options.check_file(whitening, "--whitening")
    if whiten_dims is not None:
        options.check_dims_fit([whiten_dims], model, "--whiten-dims")
    check_writable_dir(index_dir, "--index-dir")
    corpus_task = specs[0]
    if corpus_task is not None:
        folder = resolve_data_dir(data_dir)
        check_split([corpus_task], split, folder)
        check_pairs_parse([(corpus_task, [split])], folder)
    return IndexBuild(index_dir=index_dir, model=model, task=corpus_task, split=split, sentences_file=sentences,
                      data_dir=data_dir, pooling=parsed_pooling, prefix=prefix, max_length=max_length,
                      whitening_file=whitening, fit_whitening_dims=whiten_dims, factory=factory,
                      search_params=search_params, batch_size=batch_size, seed=seed, allow_low_rank=allow_low_rank,
                      precision=precision, threads=threads)


@dataclass(frozen=True)
class IndexSearch:
    """`stseval index search`: queries looked up in an index folder; None settings are the index's own."""

    index_dir: Path
    queries: tuple[str, ...]
    top_k: int = 10
    model: str | None = None
    pooling: str | None = None
    prefix: str | None = None
    whitening_file: Path | None = None
    search_params: str = ""
    precision: str | None = None
    threads: int | None = None


def parse_index_search(*, index_dir: Path, queries: Sequence[str] | None = None, queries_file: str | None = None,
                       top_k: int = 10, model: str | None = None, pooling: str | None = None,
                       prefix: str | None = None, whitening: Path | None = None, search_params: str = "",
                       precision: str | None = None, threads: int | None = None) -> IndexSearch:
    """The `index search` options as an IndexSearch: the folder exists, the settings parse, and the
    QUERY arguments plus the lines of --queries (a file, or '-' for standard input) give at least one query.

    Whether model, pooling, prefix and whitening match the index is checked when it loads (its meta.json).
    """
    if not index_dir.is_dir():
        raise StsevalError(f"--index-dir {index_dir}: no such folder; build one with `stseval index build`")
    if precision is not None:
        options.check_precision(precision)
    options.check_threads(threads)
    all_queries = (*(queries or []), *options.read_queries(queries_file))
    if not all_queries:
        raise StsevalError("give at least one QUERY or --queries FILE")
    return IndexSearch(index_dir=index_dir, queries=all_queries, top_k=top_k, model=model, pooling=pooling,
                       prefix=prefix, whitening_file=whitening, search_params=search_params, precision=precision,
                       threads=threads)
