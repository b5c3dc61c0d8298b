"""Encoding speed of the base model vs the freshly trained SimCSE model, measured side by side.

simcse-train scores the base model ("raw", before training) and then the trained model, reloaded
from its saved folder ("simcse", after). Both go through stseval.encoders.encoder.encode with the same
sentences, batch size and max length. This script times, in one process and interleaved:

  base-before   the base encoder before any training
  base-after    the same base encoder object after a short SimCSE training in this process
  trained       the trained model, reloaded from its folder (the path simcse-train evaluates with)

so the ratio trained / base-after isolates the model (dtype, attention, tokenizer, padding) and
base-after / base-before the process state after training (threads, memory, other load).
On a shared machine compare the ratios of one run, not seconds across runs.

    .venv/bin/python benchmarks/simcse_eval_paths.py [--model default] [--sentences 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from stseval.common.settings import Dropout, Pooling
from stseval.data.tasks import TASKS, load_pairs, resolve_data_dir
from stseval.encoders.encoder import encode, load_encoder
from stseval.methods.simcse import SimcseSettings, train_simcse


def rate(encoder, texts: list[str]) -> float:
    started = time.perf_counter()
    encode(encoder, texts, ["last-avg"], max_length=64, batch_size=64, show_progress=False)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--sentences", type=int, default=400, help="STS-B test sentences encoded per timing")
    parser.add_argument("--train-sentences", type=int, default=32, help="SimCSE training sentences (batch 16)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data_dir = resolve_data_dir(None)
    pairs = load_pairs(TASKS["STS-B"], "test", data_dir)
    texts = [text for pair in pairs for text in (pair.sentence1, pair.sentence2)][: args.sentences]
    train = [pair.sentence1 for pair in load_pairs(TASKS["STS-B"], "valid", data_dir)][: args.train_sentences]
    base = load_encoder(args.model)
    rate(base, texts[:64])  # warm-up: first-call allocations
    before = [rate(base, texts) for _ in range(args.repeats)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = SimcseSettings(pooling=Pooling("last-avg"), dropout=Dropout(0.1), batch_size=16, max_length=64,
                                  checkpoint_steps=1000)
        trained = train_simcse(base.folder, train, settings, Path(tmp) / "run", base_model=args.model,
                               base_fingerprint=base.fingerprint, show_progress=False)
        reloaded = load_encoder(str(trained.folder))
        after, trained_rates = [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            after.append(rate(base, texts))
            trained_rates.append(rate(reloaded, texts))
    dtypes = {str(p.dtype) for p in reloaded.model.parameters()}
    print(f"torch threads {torch.get_num_threads()}; trained dtypes {sorted(dtypes)}; attention "
          f"{base.model.config._attn_implementation} / {reloaded.model.config._attn_implementation}")
    for label, values in (("base-before", before), ("base-after", after), ("trained", trained_rates)):
        print(f"{label:12s} {statistics.median(values):7.1f} sentences/s (median of {args.repeats}: "
              f"{', '.join(f'{v:.1f}' for v in values)})")
    print(f"trained / base-after:    {statistics.median(trained_rates) / statistics.median(after):.2f}")
    print(f"base-after / base-before: {statistics.median(after) / statistics.median(before):.2f}")


if __name__ == "__main__":
    main()
