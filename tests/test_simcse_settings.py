"""Settings checks (stseval/methods/simcse/settings.py): each bad setting names its option."""

from __future__ import annotations

import pytest

from stseval.common.errors import StsevalError
from training_helpers import simcse_settings


@pytest.mark.parametrize(
    ("overrides", "option"),
    [({"dropout": 1.0}, "--dropout"), ({"dropout": -0.1}, "--dropout"), ({"pooling": "mean"}, "--pooling"),
     ({"loss": "triplet"}, "--loss"), ({"batch_size": 1}, "--batch-size"), ({"learning_rate": 0.0}, "--lr")],
)
def test_bad_settings_name_their_option(overrides, option):
    with pytest.raises(StsevalError, match=f"^{option}"):
        simcse_settings(**overrides).validate()

