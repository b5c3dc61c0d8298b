"""Settings checks (stseval/methods/simcse/settings.py): each bad setting names its option, in the same words for
SimCSE and CoSENT (one implementation, `check_loop_settings`)."""

from __future__ import annotations

import pytest

from stseval.common.errors import StsevalError
from stseval.common.settings import LAYER_AVG, Dropout, Pooling
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
    # settings hold values (parsed once, where the option was read): text or a bare number is refused, not read
    ({"dropout": "0.1"}, "--dropout: '0.1' is not a Dropout value; read option text with Dropout.parse"),
    ({"dropout": 0.3}, "--dropout: 0.3 is not a Dropout value; read option text with Dropout.parse"),
    ({"pooling": "cls"}, "--pooling: 'cls' is text, not a Pooling value; give Pooling('cls') (Pooling.parse reads "
                         "option text)"),
    # the trainers take token poolings only: what check_pooling said of these names, said of the values
    ({"pooling": Pooling("sentence")}, f"--pooling: unknown pooling 'sentence'; choose from {', '.join(POOLINGS)}"),
    ({"pooling": Pooling(LAYER_AVG, 3)},
     f"--pooling: unknown pooling 'layer-avg:3'; choose from {', '.join(POOLINGS)}"),
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


@pytest.mark.parametrize("settings_class", [SimcseSettings, CosentSettings])
def test_settings_hold_values_and_their_identity_holds_the_row_text(settings_class):
    """A Pooling and a Dropout cross into the trainers' settings as values; identity.json (which a resumed run
    compares) still records the pooling's name and the rate as a float, as before the settings held values."""
    from dataclasses import asdict

    from stseval.methods.simcse.settings import settings_identity

    settings = settings_class(pooling=Pooling.parse("first-last-avg"), dropout=Dropout.parse("0.3"))
    settings.validate()
    assert settings.pooling == Pooling("first-last-avg") and settings.dropout.rate == 0.3
    identity = settings_identity(settings)
    assert identity["pooling"] == "first-last-avg" and identity["dropout"] == 0.3
    assert isinstance(identity["dropout"], float)
    fields = asdict(settings)
    assert list(identity) == list(fields)  # the same keys in the same order
    assert {key: value for key, value in identity.items() if key not in ("pooling", "dropout")} == {
        key: value for key, value in fields.items() if key not in ("pooling", "dropout")}


def test_default_settings_are_su_s_values():
    assert SimcseSettings().pooling == CosentSettings().pooling == Pooling("cls")
    assert SimcseSettings().dropout == CosentSettings().dropout == Dropout(0.1)
