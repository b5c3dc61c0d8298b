"""Training sentences (stseval/methods/simcse/sentences.py): Su's seeded shuffle and cap, duplicates kept."""

from __future__ import annotations

import pytest

from stseval.common.errors import StsevalError
from stseval.methods.simcse.sentences import default_max_sentences, select_sentences, sentences_sha256


def test_sentence_selection_is_seeded_capped_and_keeps_duplicates():
    sentences = [f"s{i % 50}" for i in range(100)]  # every sentence twice
    chosen = select_sentences(sentences, 30, seed=0)
    assert chosen == select_sentences(sentences, 30, seed=0) != select_sentences(sentences, 30, seed=1)
    assert len(chosen) == 30 and sorted(select_sentences(sentences, None, seed=0)) == sorted(sentences)
    with pytest.raises(StsevalError, match="^--train-on"):
        select_sentences([], None, seed=0)
    with pytest.raises(StsevalError, match="^--max-sentences"):
        select_sentences(sentences, 1, seed=0)


def test_su_caps_every_task_but_pawsx_and_the_hash_follows_order():
    assert default_max_sentences("STS-B") == 10_000 and default_max_sentences("PAWSX") is None
    assert sentences_sha256(["a", "b"]) == sentences_sha256(["a", "b"]) != sentences_sha256(["b", "a"])
