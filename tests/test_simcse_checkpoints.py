"""Checkpoints (stseval/methods/simcse/checkpoints.py): resume to the same weights, fall back past a truncated
checkpoint, and the best-on-valid folder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stseval.common.errors import StsevalError
from stseval.common.settings import Dropout
from stseval.methods.simcse.checkpoints import CHECKPOINT_DIR
from stseval.methods.simcse.run_folder import SETTINGS_FILE
from stseval.methods.simcse.train import train_simcse
from tiny_models import make_bert
from training_helpers import simcse_settings, stop_at

pytestmark = pytest.mark.usefixtures("pinned_torch")  # one torch thread: two CPU cores are shared with other work


def test_interrupted_training_resumes_to_the_same_weights(simcse_bert, simcse_texts, tmp_path, pinned_torch):
    settings = simcse_settings(checkpoint_steps=2, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train_simcse(simcse_bert, simcse_texts, settings, tmp_path / "run", show_progress=False, on_step=stop_at(7))
    assert (tmp_path / "run" / CHECKPOINT_DIR / "step-6" / "complete").is_file()
    assert not (tmp_path / "run" / SETTINGS_FILE).exists()

    resumed = train_simcse(simcse_bert, simcse_texts, settings, tmp_path / "run", show_progress=False)
    assert resumed.resumed_from == "step-6" and resumed.steps == 8
    straight = train_simcse(simcse_bert, simcse_texts, settings, tmp_path / "straight", show_progress=False)
    assert resumed.losses == straight.losses  # every step, the 6 before the interruption included
    for (name, weight), (_, other) in zip(resumed.model.state_dict().items(), straight.model.state_dict().items(),
                                          strict=True):
        assert torch.equal(weight, other), name

    again = train_simcse(simcse_bert, simcse_texts, settings, tmp_path / "run", show_progress=False)
    assert again.reused and again.steps == 8
    with pytest.raises(StsevalError, match="--runs-dir: .* dropout=0.1, not 0.3"):
        train_simcse(simcse_bert, simcse_texts, simcse_settings(checkpoint_steps=2, epochs=2, dropout=Dropout(0.3)),
                     tmp_path / "run")


def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(simcse_bert, simcse_texts, tmp_path, capsys):
    settings = simcse_settings(checkpoint_steps=2, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train_simcse(simcse_bert, simcse_texts, settings, tmp_path / "run", show_progress=False, on_step=stop_at(7))
    newest = tmp_path / "run" / CHECKPOINT_DIR / "step-6"
    (newest / "trainer.pt").write_bytes((newest / "trainer.pt").read_bytes()[:100])
    resumed = train_simcse(simcse_bert, simcse_texts, settings, tmp_path / "run", show_progress=False)
    assert resumed.resumed_from == "step-4" and resumed.steps == 8
    assert "step-6 does not load" in capsys.readouterr().err
    straight = train_simcse(simcse_bert, simcse_texts, settings, tmp_path / "straight", show_progress=False)
    assert resumed.losses == straight.losses


def test_best_valid_folder_of_a_model_without_pooler_has_no_random_pooler(tmp_path, simcse_texts):
    """The e5 default has no pooler: neither the final nor the best-valid folder may gain a random one."""
    from safetensors import safe_open

    from stseval.evaluation.validation import ValidationPairs
    from stseval.methods.simcse.run_folder import BEST_VALID_DIR

    folder = make_bert(tmp_path / "bert", with_pooler=False)
    validation = ValidationPairs(simcse_texts[:20], simcse_texts[20:40], [float(i % 5) for i in range(20)],
                                 every_steps=1)
    trained = train_simcse(folder, simcse_texts, simcse_settings(), tmp_path / "run", show_progress=False,
                           validation=validation)
    final_vectors = trained.model.encode(simcse_texts[:8])
    for saved in (tmp_path / "run", tmp_path / "run" / BEST_VALID_DIR):
        with safe_open(str(saved / "model.safetensors"), framework="pt") as handle:
            assert not any("pooler" in key for key in handle.keys()), saved
    assert [point["step"] for point in trained.curve] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(trained.model.encode(simcse_texts[:8]), final_vectors)  # final weights restored
