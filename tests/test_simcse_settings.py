"""Settings checks (stseval/methods/simcse/settings.py): each bad setting names its option, in the same words for
SimCSE and CoSENT (one implementation, `check_loop_settings`)."""

from __future__ import annotations

import pytest

from stseval.common.errors import StsevalError
from stseval.encoders.pooling import POOLINGS
from stseval.methods.cosent import CosentSettings
from stseval.methods.simcse import SimcseSettings
from training_helpers import simcse_settings


@pytest.mark.parametrize(
    ("overrides", "option"),
    [({"dropout": 1.0}, "--dropout"), ({"dropout": -0.1}, "--dropout"), ({"pooling": "mean"}, "--pooling"),
     ({"loss": "triplet"}, "--loss"), ({"batch_size": 1}, "--batch-size"), ({"learning_rate": 0.0}, "--lr")],
)
def test_bad_settings_name_their_option(overrides, option):
    with pytest.raises(StsevalError, match=f"^{option}"):
        simcse_settings(**overrides).validate()


SHARED_CHECKS = [
    ({"pooling": "mean"}, f"--pooling: unknown pooling 'mean'; choose from {', '.join(POOLINGS)}"),
    ({"dropout": 1.0}, "--dropout: 1.0 is outside [0, 1); Su used 0.1 and 0.3"),
    ({"dropout": "0.1"}, "--dropout: '0.1' is outside [0, 1); Su used 0.1 and 0.3"),
    ({"batch_size": 1}, "--batch-size: 1 must be an integer of at least 2"),
    ({"batch_size": 2.5}, "--batch-size: 2.5 must be an integer of at least 2"),
    ({"epochs": 0}, "--epochs: 0 must be an integer of at least 1"),
    ({"max_length": 1}, "--max-length: 1 must be an integer of at least 2"),
    ({"checkpoint_steps": 0}, "--checkpoint-steps: 0 must be an integer of at least 1"),
    ({"learning_rate": 0.0}, "--lr: 0.0 must be positive"),
    ({"learning_rate": float("nan")}, "--lr: nan must be positive"),
    ({"precision": "fp8"}, "--precision fp8: unknown; choose from fp32, bf16"),
]


@pytest.mark.parametrize(("overrides", "message"), SHARED_CHECKS)
@pytest.mark.parametrize("settings_class", [SimcseSettings, CosentSettings])
def test_shared_checks_give_the_same_message_for_simcse_and_cosent(settings_class, overrides, message):
    """The whole line users see, word for word, from either command's settings."""
    with pytest.raises(StsevalError) as caught:
        settings_class(**overrides).validate()
    assert str(caught.value) == message


@pytest.mark.parametrize(("overrides", "message"), [
    ({"loss": "triplet"}, "--loss: unknown loss 'triplet'; choose from su, princeton, cached"),
    ({"mini_batch_size": 0}, "--mini-batch-size: 0 must be an integer of at least 1"),
    ({"loss": "triplet", "batch_size": 1}, "--loss: unknown loss 'triplet'; choose from su, princeton, cached"),
    ({"mini_batch_size": 0, "epochs": 0}, "--epochs: 0 must be an integer of at least 1"),
    ({"mini_batch_size": 0, "learning_rate": -1.0}, "--mini-batch-size: 0 must be an integer of at least 1"),
])
def test_simcse_only_checks_keep_their_place_in_the_order(overrides, message):
    """--loss comes after --dropout and before the counts, --mini-batch-size after the other counts and before --lr."""
    with pytest.raises(StsevalError) as caught:
        SimcseSettings(**overrides).validate()
    assert str(caught.value) == message


def test_default_settings_pass():
    SimcseSettings().validate()
    CosentSettings().validate()
