"""The SimCSE model: Transformer -> `PoolingHead` in memory, built-in sentence-transformers modules on disk.

Pooling has one definition, `stseval.encoders.pooling.pool`. In memory the model is Transformer ->
`PoolingHead`, which calls `pool` on the Transformer's hidden states, so training, the validation curve
and `trained.model.encode` pool exactly as `stseval.encoders.encoder.encode` does. On disk (`save`) the
head is written as built-in sentence-transformers modules, so the folder loads with a plain
`SentenceTransformer(path)` and no `trust_remote_code` (sentence-transformers 6 refuses module classes
outside its own namespace without it); tests/test_simcse_model.py checks that all seven give the vectors
of `pool` to 2e-5:
    cls            Transformer -> Pooling("cls")
    last-avg       Transformer -> Pooling("mean")
    max            Transformer -> Pooling("max")
    pooler         Transformer -> Pooling("cls") -> Dense(identity), its Linear IS BERT's pooler
                   dense layer (shared), so the saved Transformer carries the trained pooler and
                   `stseval.encoders.encoder.load_encoder` sees it
    pooler-tanh    the same with Dense(tanh), i.e. Hugging Face `pooler_output`
    first-last-avg Transformer(output_hidden_states) -> WeightedLayerPooling(layers 1..L, frozen
                   weights 1,0,...,0,1) -> Pooling("mean"): mean of (hidden_states[1] + last) / 2
    last2avg       the same over layers L-1, L with weights 1, 1

Dropout is set everywhere a Hugging Face model reads it (`set_dropout`); the README model card of a
SimCSE run folder is `model_card`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from stseval.common.errors import StsevalError
from stseval.common.settings import Dropout, Pooling
from stseval.encoders.pooling import pool
from stseval.methods.simcse.settings import check_trainable

if TYPE_CHECKING:  # annotations only: sentence-transformers takes seconds to import
    from sentence_transformers.sentence_transformer.modules import Transformer


def set_dropout(model: nn.Module, dropout: Dropout) -> int:
    """Set every dropout probability of a model: config fields, nn.Dropout modules, float attributes.

    Hugging Face models read dropout from three places: `config.hidden_dropout_prob` /
    `config.attention_probs_dropout_prob` (read again when layers are rebuilt), `nn.Dropout(p)`
    modules (BERT's attention passes `self.dropout.p` to SDPA), and in some architectures plain
    float attributes such as `self.attention_dropout`. All three are set.

    Args:
        model: any torch module, e.g. a SentenceTransformer or a BertModel.
        dropout: the probability (a `Dropout`: in [0, 1) by construction).
    Returns:
        how many places were set (0 means the model has no dropout at all).
    """
    rate = dropout.rate
    changed = 0
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            for key, value in config.to_dict().items():
                if "dropout" in key and isinstance(value, float):
                    setattr(config, key, rate)
                    changed += 1
        if isinstance(module, nn.Dropout):
            module.p = rate
            changed += 1
            continue
        for key, value in vars(module).items():
            if "dropout" in key and isinstance(value, float) and not isinstance(value, bool):
                setattr(module, key, rate)
                changed += 1
    return changed


class PoolingHead(nn.Module):
    """The sentence-transformers module after the Transformer: `pooling` by `stseval.encoders.pooling.pool`.

    Reads the Transformer module's features: `token_embeddings` (b, s, h), `all_layer_embeddings`
    (the hidden_states tuple, present when the model was loaded with output_hidden_states) and
    `attention_mask` (b, s); adds `sentence_embedding` (b, h).
    """

    def __init__(self, pooling: Pooling, pooler_dense: nn.Linear | None = None):
        super().__init__()
        self.pooling = pooling
        self.pooler_dense = pooler_dense  # BERT's own pooler layer (shared), for pooler / pooler-tanh only

    def forward(self, features: dict) -> dict:
        hidden_states = features.get("all_layer_embeddings") or (features["token_embeddings"],)
        features["sentence_embedding"] = pool(self.pooling, hidden_states, features["attention_mask"],
                                              self.pooler_dense)
        return features


def build_simcse_model(model_folder: Path, pooling: Pooling, dropout: Dropout, max_length: int,
                       device: str | None = None):
    """A SentenceTransformer over a Hugging Face encoder folder whose output is `pooling`.

    Args:
        model_folder: folder with config.json, *.safetensors and the tokenizer (e.g. `Encoder.folder`).
        pooling: a token pooling (kind one of `stseval.common.settings.POOLINGS`), computed by `PoolingHead`;
            `save` writes it as the built-in modules listed in the module docstring.
        dropout: set everywhere (see `set_dropout`); used while training only, the model is
            returned in train mode and evaluation must call `.eval()`.
        max_length: tokens kept per sentence, [CLS] and [SEP] included.
        device: torch device; None lets sentence-transformers pick.
    Returns:
        the SentenceTransformer (Transformer -> PoolingHead).
    Raises:
        StsevalError naming --pooling when the model lacks a pooler or the layers it needs.
    """
    from sentence_transformers.sentence_transformer.modules import Transformer

    check_trainable(pooling, dropout)
    layer_pooling = pooling.kind in ("first-last-avg", "last2avg")
    config_kwargs = {"hidden_dropout_prob": dropout.rate, "attention_probs_dropout_prob": dropout.rate}
    if layer_pooling:
        config_kwargs["output_hidden_states"] = True
    transformer = Transformer(
        str(model_folder), max_seq_length=max_length,
        model_kwargs={"use_safetensors": True, "dtype": torch.float32}, config_kwargs=config_kwargs,
    )
    backbone = transformer.auto_model
    if getattr(backbone, "pooler", None) is not None and not has_trained_pooler(Path(model_folder)):
        # transformers filled it with random weights; drop it so they are neither trained nor saved as real
        backbone.pooler = None
    pooler_dense = None
    if pooling.needs_pooler:
        pooler = getattr(backbone, "pooler", None)
        if pooler is None or not hasattr(pooler, "dense") or not has_trained_pooler(Path(model_folder)):
            raise StsevalError(f"--pooling {pooling}: {model_folder} has no trained pooler layer; use cls, last-avg, "
                               "first-last-avg, last2avg or max")
        pooler_dense = pooler.dense  # shared: training updates BERT's own pooler, which load_encoder reads
    if layer_pooling and int(backbone.config.num_hidden_layers) < 2:
        raise StsevalError(f"--pooling {pooling}: needs a model with at least 2 Transformer layers")
    model = _simcse_model_class()(modules=[transformer, PoolingHead(pooling, pooler_dense)], device=device)
    set_dropout(model, dropout)
    model.train()
    return model


@functools.cache
def _simcse_model_class() -> type:
    """SentenceTransformer whose `save` writes the PoolingHead as built-in modules (defined on first use:
    importing sentence-transformers takes seconds)."""
    from sentence_transformers import SentenceTransformer

    class SimcseModel(SentenceTransformer):
        def save(self, path: str, *args, **kwargs) -> None:
            from sentence_transformers.sentence_transformer.modules import Transformer

            transformer, head = self[0], self[1]
            if not isinstance(transformer, Transformer) or not isinstance(head, PoolingHead):
                # build_simcse_model makes these two modules
                raise TypeError(f"SimcseModel.save: modules {type(transformer).__name__}, {type(head).__name__}; "
                                "expected Transformer, PoolingHead")
            on_disk = SentenceTransformer(modules=[transformer, *_builtin_pooling(transformer, head)],
                                          device=str(self.device))
            on_disk.save(path, *args, **kwargs)

    return SimcseModel


def _builtin_pooling(transformer: Transformer, head: PoolingHead) -> list[nn.Module]:
    """Built-in sentence-transformers modules that give `head`'s vectors (table in the module docstring)."""
    from sentence_transformers.sentence_transformer.modules import Dense, WeightedLayerPooling
    from sentence_transformers.sentence_transformer.modules import Pooling as StPooling

    dim = transformer.get_embedding_dimension()
    kind = head.pooling.kind
    if head.pooling.needs_pooler:
        if head.pooler_dense is None:
            raise ValueError(f"PoolingHead({str(head.pooling)!r}) has no pooler layer")
        with torch.random.fork_rng(devices=[]):  # Dense draws a random Linear that is replaced at once
            dense = Dense(dim, dim, bias=head.pooler_dense.bias is not None,
                          activation_function=nn.Tanh() if kind == "pooler-tanh" else nn.Identity())
        dense.linear = head.pooler_dense
        return [StPooling(dim, "cls"), dense]
    if kind in ("first-last-avg", "last2avg"):
        n_layers = int(transformer.auto_model.config.num_hidden_layers)
        # hidden_states[0] is the embedding output, [1] the first layer, [n_layers] the last
        layer_start = 1 if kind == "first-last-avg" else n_layers - 1
        weights = torch.zeros(n_layers + 1 - layer_start)
        weights[[0, -1]] = 1.0
        layers = WeightedLayerPooling(dim, num_hidden_layers=n_layers, layer_start=layer_start,
                                      layer_weights=nn.Parameter(weights, requires_grad=False))
        return [layers, StPooling(dim, "mean")]
    return [StPooling(dim, {"cls": "cls", "last-avg": "mean", "max": "max"}[kind])]


def has_trained_pooler(model_folder: Path) -> bool:
    """Whether the folder's safetensors hold pooler weights (else transformers would initialise them at random)."""
    from safetensors import safe_open

    for weights in model_folder.glob("*.safetensors"):
        with safe_open(str(weights), framework="pt") as handle:
            if any(key.endswith("pooler.dense.weight") for key in handle.keys()):
                return True
    return False


def card_text(tags: str, heading: str, about: str, identity: dict, result: dict, card_facts: dict[str, str]) -> str:
    """README.md of a trained run folder (SimCSE, CoSENT): front matter with tags, heading, what the training
    did (about), then its data facts, settings (identity) and outcome (result, without the per-step losses)."""
    facts = "\n".join(f"- {name}: {value}" for name, value in card_facts.items())
    settings = "\n".join(f"- {name}: {value!r}" for name, value in identity.items())
    outcome = "\n".join(f"- {name}: {value}" for name, value in result.items() if name != "losses")
    return f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags: [sentence-transformers, {tags}, chinese, stseval]
---

# {heading}

{about}

## Data
{facts}

## Settings
{settings}

## Training
{outcome}
"""


def model_card(identity: dict, result: dict, card_facts: dict[str, str]) -> str:
    """README.md for a trained run folder: what it was trained on, with which settings and libraries."""
    base_model = identity["base_model"] or "a local model"
    about = f"""Trained by `stseval simcse-train` (stseval/methods/simcse/) the way Su Jianlin ran SimCSE on the
Chinese STS tasks (https://kexue.fm/archives/8348): each training sentence is its own positive through
two dropout masks, the other sentences of the batch are negatives, InfoNCE at temperature 0.05.
Labels were not used. Sentences were not deduplicated (as in Su's script).

Load with `SentenceTransformer(path)` (built-in modules only, no remote code) or with
`stseval.encoders.encoder.load_encoder(path)`, which pools the Transformer's hidden states itself with the
same definition ({identity['pooling']}). Evaluate in eval mode (dropout off); `encode` does that."""
    heading = f"Unsupervised SimCSE ({identity['pooling']}, dropout {identity['dropout']:g}) from {base_model}"
    return card_text("simcse, unsupervised", heading, about, identity, result, card_facts)
