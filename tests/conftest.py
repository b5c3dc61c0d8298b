"""Shared fixtures: a seeded rng, and the real task data from ../shared (full and sampled).

The real data is never copied into the repository (BQ and LCQMC licences); tests that need it
skip when ../shared/data/chinese-sts is absent.
"""

import random
from pathlib import Path

import numpy as np
import pytest

from stseval.data.tasks import TASKS, split_path

SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chinese-sts"
SAMPLE_PAIRS = 300  # per task and split


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy Generator; every test gets a fresh one."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The full shared data folder (senteval_cn layout), read-only."""
    if not any(SHARED_DATA_DIR.glob("*/*.data")):
        pytest.skip(f"real data not found at {SHARED_DATA_DIR}")
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
