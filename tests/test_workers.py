"""encoders/workers.py: --processes N runs the same batches in N worker processes, so the same vectors."""

import numpy as np
import pytest
import torch

from stseval.encoders.cache import EmbeddingCache
from stseval.encoders.encoder import encode
from stseval.encoders.loading import load_encoder
from stseval.encoders.pooling import POOLINGS
from tiny_models import SENTENCES

ALL_BUT_POOLER = [name for name in POOLINGS if name not in ("pooler", "pooler-tanh")]


pytestmark = pytest.mark.usefixtures("stseval_home")


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return load_encoder(str(tiny_bert_dir))


def test_two_processes_give_the_same_vectors_as_one(tiny_bert_dir, bert, tmp_path):
    """--processes 2 spreads batches over two workers; batches are the same, so are the vectors."""
    two = load_encoder(str(tiny_bert_dir), processes=2)
    assert two.fingerprint == bert.fingerprint  # where it runs is not what it computes
    texts = [f"{a}{b}" for a in SENTENCES for b in SENTENCES]  # 64 sentences, 8 batches of 8
    settings = dict(max_length=32, batch_size=8, show_progress=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # 1 process x 2 threads against 2 processes x 1 thread
    try:
        one_process = encode(bert, texts, ALL_BUT_POOLER, **settings)
        two_processes = encode(two, texts, ALL_BUT_POOLER, cache=EmbeddingCache(tmp_path / "c"), **settings)
    finally:
        torch.set_num_threads(previous)
    for name in ALL_BUT_POOLER:
        np.testing.assert_allclose(two_processes[name], one_process[name], rtol=0, atol=1e-6)


def test_an_encoder_with_processes_but_no_worker_runner_is_refused(bert):
    """Only load_encoder(..., processes=N) sets up the workers; an Encoder copied with processes=2 alone
    must not silently run in this process under a --processes setting it does not honour."""
    import dataclasses

    copied = dataclasses.replace(bert, processes=2)
    with pytest.raises(RuntimeError, match="no worker runner"):
        encode(copied, list(SENTENCES), "cls", max_length=16, show_progress=False)
    assert load_encoder(str(bert.folder), processes=2).pool_batches is not None
    assert bert.pool_batches is None
