"""`--processes N`: a transformer `Encoder`'s forward passes spread over N spawned CPU worker processes.

Each worker loads the same folder, backend and precision with the loader it is given (`load_encoder`,
passed by reference so this module needs nothing above `transformer.py`), checks that it got the same
fingerprint, and runs `Encoder.pool_batch` on the padded batches sent to it. Batches are the same as in
one process (`batching.py`), so the vectors are too. `load_encoder` sets `Encoder.pool_batches` to
`functools.partial(pooled_in_workers, load=load_encoder)` when processes > 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from stseval.common.errors import StsevalError
from stseval.common.settings import Pooling
from stseval.encoders.precision import DEFAULT_PRECISION
from stseval.encoders.transformer import Encoder, PaddedBatch

Load = Callable[..., object]
"""`load_encoder(folder, backend=..., precision=...)`: what a worker calls to load its own copy."""

_WORKER_ENCODER: Encoder | None = None  # the encoder a worker process loaded (see pooled_in_workers)


def pooled_in_workers(encoder: Encoder, inputs: Iterator[PaddedBatch], poolings: list[Pooling],
                      load: Load) -> Iterator[dict[str, np.ndarray]]:
    """`Encoder.pool_batch` over `inputs` in encoder.processes spawned processes, results in input order.

    Each worker loads the same folder and backend with `load` (checked by fingerprint) and gets this
    process's torch threads divided by the number of workers, so the CPU is not oversubscribed.
    At most 2 batches per worker are in flight, so memory stays bounded on large corpora.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, torch.get_num_threads() // encoder.processes)
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools
    with ProcessPoolExecutor(encoder.processes, mp_context=context, initializer=_start_worker,
                             initargs=(load, str(encoder.folder), encoder.backend, threads, encoder.precision)) as pool:
        fingerprint = pool.submit(_worker_fingerprint).result()
        if fingerprint != encoder.fingerprint:
            raise StsevalError(f"--processes: a worker loaded {encoder.folder} with another fingerprint; "
                               "did the model change on disk?")
        in_flight: deque = deque()
        for batch in inputs:
            in_flight.append(pool.submit(_worker_pool_batch, batch, poolings))
            if len(in_flight) >= 2 * encoder.processes:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()


def _start_worker(load: Load, folder: str, backend: str, threads: int, precision: str = DEFAULT_PRECISION) -> None:
    global _WORKER_ENCODER
    torch.set_num_threads(threads)
    encoder = load(folder, backend=backend, precision=precision)
    if not isinstance(encoder, Encoder):  # pooled_in_workers runs transformer folders only
        raise RuntimeError(f"{folder}: a worker loaded a {type(encoder).__name__}, not a transformer Encoder")
    _WORKER_ENCODER = encoder


def _worker_encoder() -> Encoder:
    if _WORKER_ENCODER is None:
        raise RuntimeError("not an encode worker: _start_worker did not run in this process")
    return _WORKER_ENCODER


def _worker_pool_batch(batch: PaddedBatch, poolings: list[Pooling]) -> dict[str, np.ndarray]:
    return _worker_encoder().pool_batch(batch, poolings)


def _worker_fingerprint() -> str:
    return _worker_encoder().fingerprint
