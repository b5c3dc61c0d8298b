"""Shared fixtures: a seeded rng, the real task data from ../shared (full and sampled), STSEVAL_HOME and torch
threads per test or module, a tiny BERT folder per module, and the SimCSE tests' tiny BERT, sentences and synthetic
STS-B folder.

The real data is never copied into the repository (BQ and LCQMC licences). A test whose input is
absent (the shared data, a committed results file) calls `missing_input`: locally it skips and says
what is missing; under CI=true it fails, so a CI run cannot pass by skipping what it was meant to check.
STSEVAL_TEST_SHARED_DATA points the tests at another data folder (tests/test_conftest.py uses it).
"""

import os
import random
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

from stseval.data.tasks import TASKS, split_path

SHARED_DATA_DIR = Path(
    os.environ.get("STSEVAL_TEST_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinese-sts"
)
SAMPLE_PAIRS = 300  # per task and split


def running_in_ci() -> bool:
    """True when CI is set to a true value (GitHub Actions and most CI services set CI=true)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def missing_input(what: str) -> NoReturn:
    """Skip the test saying `what` is missing; under CI=true fail it instead (a skip would hide it)."""
    if running_in_ci():
        pytest.fail(f"missing input under CI=true: {what}", pytrace=False)
    pytest.skip(f"missing input: {what}")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy Generator; every test gets a fresh one."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The full shared data folder (senteval_cn layout), read-only."""
    if not any(SHARED_DATA_DIR.glob("*/*.data")):
        missing_input(f"real data (*/*.data) not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory, shared_data_dir) -> Path:
    """A data folder with up to SAMPLE_PAIRS real lines per task and split, in file order.

    Lines are copied byte for byte (quoting kept) and chosen with a seed per file, so every run
    sees the same sample.
    """
    sample_dir = tmp_path_factory.mktemp("chinese-sts")
    for spec in TASKS.values():
        for split in spec.files:
            source = split_path(spec, split, shared_data_dir)
            if not source.is_file():
                continue
            lines = source.read_bytes().splitlines(keepends=True)  # bytes: splits at \n / \r only
            seeded = random.Random(f"{spec.name}.{split}")
            chosen = sorted(seeded.sample(range(len(lines)), min(SAMPLE_PAIRS, len(lines))))
            target = split_path(spec, split, sample_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"".join(lines[i] for i in chosen))
    return sample_dir


@pytest.fixture
def pinned_torch():
    """One thread and full-precision float32 matmuls, restored afterwards: for tests that claim bit-identity.

    A thread count changes how a reduction is split (so its rounding), and a matmul precision other
    than "highest" lets a CPU with AVX-512 BF16 or a GPU use reduced-precision products.
    """
    import torch

    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    torch.set_num_threads(1)
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(precision)



@pytest.fixture
def stseval_home(tmp_path, monkeypatch) -> Path:
    """STSEVAL_HOME set to a fresh folder under tmp_path (the embedding cache, downloads); returns it.

    Modules that want it for every test say `pytestmark = pytest.mark.usefixtures("stseval_home")`.
    """
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module, restored afterwards: tiny models gain nothing from threads, and on a
    busy machine idle threads slow every op. (`pinned_torch` also pins the matmul precision, per test.)"""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# The SimCSE tests' tiny model and data (tests/training_helpers.py holds the functions). Module-scoped, so each
# test module gets its own copy, built from the same seeds. Imports are lazy: they load torch and stseval.methods.


@pytest.fixture(scope="module")
def simcse_bert(tmp_path_factory) -> Path:
    """A seeded 3-layer BertModel (hidden 32, with pooler) and its character tokenizer, saved to a folder."""
    from tiny_models import make_bert
    from training_helpers import N_LAYERS

    return make_bert(tmp_path_factory.mktemp("tiny-bert"), num_hidden_layers=N_LAYERS)


@pytest.fixture(scope="module")
def simcse_texts() -> list[str]:
    """64 seeded random sentences of 4-16 characters over the tiny vocabulary."""
    from training_helpers import seeded_sentences

    return seeded_sentences()


@pytest.fixture
def sts_b_dir(tmp_path) -> Path:
    """A synthetic STS-B data folder in the tiny vocabulary (valid and test, 24 pairs each, scores 0-5; no train
    split), under tmp_path / "data"."""
    from training_helpers import write_sts_b_folder

    return write_sts_b_folder(tmp_path)


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """tests/tiny_models.py's default seeded BERT (2 layers, hidden 32, with pooler), saved once per module."""
    from tiny_models import make_bert

    return make_bert(tmp_path_factory.mktemp("models") / "bert")
