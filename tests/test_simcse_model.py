"""The SimCSE model (stseval/methods/simcse/model.py): dropout everywhere, pooling heads saved as built-in modules.

On a tiny random BERT (tests/tiny_models.py, 3 layers so first-last-avg and last2avg differ; hidden 32).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from stseval.common.errors import StsevalError
from stseval.common.settings import Dropout, Pooling
from stseval.encoders.pooling import POOLINGS, pool
from stseval.methods.simcse.model import build_simcse_model
from stseval.methods.simcse.train import train_simcse
from tiny_models import make_bert
from training_helpers import N_LAYERS, forward, simcse_settings

pytestmark = pytest.mark.usefixtures("pinned_torch")  # one torch thread: two CPU cores are shared with other work


@pytest.mark.parametrize("dropout", [0.1, 0.3, 0.0])
def test_dropout_is_set_everywhere_and_acts_only_in_train_mode(simcse_bert, simcse_texts, dropout, pinned_torch):
    model = build_simcse_model(simcse_bert, Pooling("last-avg"), Dropout(dropout), max_length=32)
    config = model[0].auto_model.config
    assert config.hidden_dropout_prob == dropout and config.attention_probs_dropout_prob == dropout
    probabilities = [module.p for module in model.modules() if isinstance(module, nn.Dropout)]
    assert len(probabilities) >= 1 + 3 * N_LAYERS  # embeddings, and attention + 2 hidden per layer
    assert set(probabilities) == {dropout}

    model.train()
    first, second = forward(model, simcse_texts[:8]), forward(model, simcse_texts[:8])
    if dropout:
        assert not torch.allclose(first, second)
    else:
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(forward(model, simcse_texts[:8]), forward(model, simcse_texts[:8]), rtol=0, atol=0)


def test_attention_dropout_alone_makes_passes_differ(simcse_bert, simcse_texts):
    """BERT's attention reads its rate from nn.Dropout.p: setting it must reach SDPA too."""
    model = build_simcse_model(simcse_bert, Pooling("cls"), Dropout(0.3), max_length=32)
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and not name.endswith("attention.self.dropout"):
            module.p = 0.0
    model.train()
    assert not torch.allclose(forward(model, simcse_texts[:8]), forward(model, simcse_texts[:8]))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_saved_folder_gives_the_same_vectors_everywhere(simcse_bert, simcse_texts, tmp_path, pooling):
    """In memory, reloaded by sentence-transformers, via stseval.encoders.encoder, and by
    stseval.encoders.pooling.pool."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel

    from stseval.encoders.encoder import encode, load_encoder

    trained = train_simcse(simcse_bert, simcse_texts, simcse_settings(pooling=Pooling.parse(pooling)), tmp_path / "run",
                           show_progress=False)
    before_saving = trained.model.encode(simcse_texts, convert_to_numpy=True)
    reloaded = SentenceTransformer(str(tmp_path / "run"), device="cpu").encode(simcse_texts, convert_to_numpy=True)
    via_stseval = encode(load_encoder(str(tmp_path / "run")), simcse_texts, [pooling], max_length=32,
                         show_progress=False)[pooling]
    backbone = BertModel.from_pretrained(tmp_path / "run").eval()
    batch = trained.model.tokenizer(simcse_texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        hidden = backbone(**batch, output_hidden_states=True).hidden_states
        by_definition = pool(pooling, hidden, batch["attention_mask"], backbone.pooler.dense).numpy()
    for other in (reloaded, via_stseval, by_definition):
        np.testing.assert_allclose(other, before_saving, rtol=0, atol=2e-5)


def test_pooler_pooling_needs_trained_pooler_weights(tmp_path):
    folder = make_bert(tmp_path / "bert", with_pooler=False)
    with pytest.raises(StsevalError, match="^--pooling pooler: .* no trained pooler"):
        build_simcse_model(folder, Pooling("pooler"), Dropout(0.1), max_length=32)
    assert build_simcse_model(folder, Pooling("cls"), Dropout(0.1), max_length=32) is not None
