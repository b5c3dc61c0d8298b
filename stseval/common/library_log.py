"""Send the libraries' chatter to a log file, so the terminal shows stseval's own progress and results.

Training through sentence-transformers prints a lot that is not for the user of stseval: transformers'
LOAD REPORT ("pooler.dense.weight | MISSING ... newly initialized", about the pooler SimCSE never
uses), tokenizer notices, "Computing widget examples" and "Writing model shards" bars.
`libraries_to_log(path)` routes all of it to `path` for the duration of a command: the libraries'
loggers and Python warnings go to the file and their helper progress bars are switched off.
stseval's own step bar, bars and lines stay on the terminal.

Example:
    >>> with libraries_to_log(Path("runs/simcse/library.log")):
    ...     run_simcse_queue(...)
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import shlex
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

# what these would print at their default level (warnings) goes to the file instead; torch is left
# alone: its loggers keep their own handlers and print nothing at that level
LIBRARY_LOGGERS = ("transformers", "sentence_transformers", "datasets", "huggingface_hub", "accelerate",
                   "py.warnings")


@contextmanager
def libraries_to_log(path: Path) -> Iterator[Path]:
    """Route library logging, warnings and helper progress bars to `path` (appended).

    Everything is restored on exit, also after an error, so tests and library callers are unaffected.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    with path.open("a", encoding="utf-8") as log:
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        log.write(f"\n=== {started} {shlex.join(['stseval', *sys.argv[1:]])}\n")
    with ExitStack() as restore:
        restore.callback(handler.close)
        for name in LIBRARY_LOGGERS:
            restore.enter_context(_only_to(logging.getLogger(name), handler, logging.WARNING))
        restore.enter_context(_warnings_to_logging())
        restore.enter_context(_transformers_quiet(handler))
        restore.enter_context(_helper_bars_off())
        yield path


@contextmanager
def _only_to(logger: logging.Logger, handler: logging.Handler, level: int) -> Iterator[None]:
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


@contextmanager
def _warnings_to_logging() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # each distinct warning once, into the log
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)


@contextmanager
def _transformers_quiet(handler: logging.Handler) -> Iterator[None]:
    """transformers keeps its own stderr handler and progress-bar switch; move both for the duration."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.disable_default_handler()
    hf_logging.add_handler(handler)
    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    try:
        yield
    finally:
        hf_logging.remove_handler(handler)
        hf_logging.enable_default_handler()
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextmanager
def _helper_bars_off() -> Iterator[None]:
    """Bars of datasets, huggingface_hub and sentence-transformers' model card ("Computing widget examples")."""
    undo = []
    try:
        import datasets

        if datasets.is_progress_bar_enabled():
            datasets.disable_progress_bars()
            undo.append(datasets.enable_progress_bars)
    except (ImportError, AttributeError):
        pass
    try:
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

        if not are_progress_bars_disabled():
            disable_progress_bars()
            undo.append(enable_progress_bars)
    except ImportError:
        pass
    try:  # the model card helper calls tqdm directly, with no switch of its own
        from sentence_transformers.base import model_card

        original = model_card.tqdm
        model_card.tqdm = functools.partial(original, disable=True)
        undo.append(lambda: setattr(model_card, "tqdm", original))
    except (ImportError, AttributeError):
        pass
    try:
        yield
    finally:
        for step in reversed(undo):
            step()
