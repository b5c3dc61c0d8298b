"""Tiny random models built on the fly, so encoder tests run on CPU in seconds without downloads.

Each builder writes a complete folder (config.json, model.safetensors, tokenizer files) and
returns its path. Weights are seeded, so two builds with the same seed are identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

HIDDEN_SIZE = 32
N_LAYERS = 2

# [CLS]/[SEP]/... first, then characters: BERT's tokenizer splits Chinese into single characters
_CHINESE_CHARS = "今天气很好我喜欢吃苹果的是不什么人你他们有在这个中国上来怎办花呗还款借钱多少"
_ASCII = "abcdefghijklmnopqrstuvwxyz0123456789:"
VOCAB: tuple[str, ...] = (
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "query",
    *_CHINESE_CHARS,
    *_ASCII,
    *(f"##{char}" for char in _ASCII),
)

SENTENCES: tuple[str, ...] = (
    "今天天气很好",
    "我喜欢吃苹果",
    "花呗怎么还款",
    "借钱",
    "你是什么人",
    "这个中国人来了",
    "他们有多少钱",
    "好",
)
"""Sentences of different token lengths that the tiny vocab covers."""


def _write_tokenizer(folder: Path) -> None:
    """vocab.txt plus a BertTokenizer saved next to it (tokenizer.json, tokenizer_config.json)."""
    from transformers import BertTokenizer

    vocab_path = folder / "vocab.txt"
    vocab_path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizer(vocab=str(vocab_path)).save_pretrained(folder)


def _bert_config(**overrides):
    """A 2-layer, 32-wide BertConfig over `VOCAB`."""
    from transformers import BertConfig

    settings = dict(
        vocab_size=len(VOCAB),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.1,  # non-zero, so a model left in train mode would be caught
        attention_probs_dropout_prob=0.1,
    )
    settings.update(overrides)
    return BertConfig(**settings)


def make_bert(folder: Path, with_pooler: bool = True, seed: int = 0, **config) -> Path:
    """A 2-layer BertModel (hidden 32; `config` overrides, e.g. hidden_size=384), with or without
    pooler weights in model.safetensors."""
    from transformers import BertModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = BertModel(_bert_config(**config), add_pooling_layer=with_pooler)
    model.save_pretrained(folder, safe_serialization=True)
    _write_tokenizer(folder)
    return folder


def make_roformer(folder: Path, seed: int = 0) -> Path:
    """A 2-layer RoFormerModel (rotary position embeddings, no pooler), BERT tokenizer."""
    from transformers import RoFormerConfig, RoFormerModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = RoFormerConfig(
        vocab_size=len(VOCAB),
        embedding_size=HIDDEN_SIZE,
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    RoFormerModel(config).save_pretrained(folder, safe_serialization=True)
    _write_tokenizer(folder)
    return folder


def make_sentence_transformers_folder(folder: Path, seed: int = 0) -> Path:
    """A sentence-transformers layout: modules.json, the BERT under 0_Transformer/, a mean Pooling."""
    make_bert(folder / "0_Transformer", seed=seed)
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": HIDDEN_SIZE, "pooling_mode_mean_tokens": True})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder
