"""The training sentences of a SimCSE run: Su's cap per task, the seeded choice, and the hash that identifies them.

Su took every sentence1 and sentence2 of the task's train, valid and test files, did NOT deduplicate,
shuffled and kept 10,000 (all for PAWSX). The caller (stseval/runs/simcse.py) gathers the sentences;
`select_sentences` does the shuffle and cap with an explicit seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from stseval.common.errors import StsevalError

DEFAULT_MAX_SENTENCES = 10_000
"""Su trained on a random 10,000 sentences per task, except PAWSX (all of them)."""

UNCAPPED_TASKS: frozenset[str] = frozenset({"PAWSX"})
"""Tasks Su trained on every sentence of (PAWSX sentences are long and few)."""


def default_max_sentences(task: str) -> int | None:
    """Su's cap on training sentences for a task: 10,000, or None (no cap) for PAWSX."""
    return None if task in UNCAPPED_TASKS else DEFAULT_MAX_SENTENCES


def select_sentences(sentences: Sequence[str], max_sentences: int | None, seed: int) -> list[str]:
    """Shuffle with `seed` and keep the first `max_sentences`, as Su did (no deduplication).

    Args:
        sentences: every training sentence, e.g. sentence1 and sentence2 of each pair of each split;
            a sentence that occurs twice stays twice, like in Su's script.
        max_sentences: cap; None keeps all.
        seed: seeds the shuffle, so the same seed picks the same sentences.
    Returns:
        the chosen sentences in shuffled order.
    Raises:
        StsevalError naming --max-sentences when it is below 2, or --train-on when fewer than 2
        sentences are given (one sentence has no negatives).
    """
    if max_sentences is not None and max_sentences < 2:
        raise StsevalError(f"--max-sentences: {max_sentences} must be at least 2 (a batch needs negatives)")
    if len(sentences) < 2:
        raise StsevalError(f"--train-on: {len(sentences)} training sentence(s); SimCSE needs at least 2")
    chosen = list(sentences)
    random.Random(seed).shuffle(chosen)
    return chosen if max_sentences is None else chosen[:max_sentences]


def sentences_sha256(sentences: Sequence[str]) -> str:
    """sha256 of the sentences in order, one per line: identifies a training set."""
    digest = hashlib.sha256()
    for sentence in sentences:
        digest.update(sentence.encode("utf-8") + b"\n")
    return digest.hexdigest()
