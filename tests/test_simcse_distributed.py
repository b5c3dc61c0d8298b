"""torchrun (stseval/methods/simcse/distributed.py): two CPU processes train as one process on the global batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training_helpers import free_port

pytestmark = pytest.mark.usefixtures("pinned_torch")  # one torch thread here; the two processes get OMP_NUM_THREADS=1


def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(simcse_bert, sts_b_dir, tmp_path):
    """2 CPU processes (gloo) x 8 sentences = 1 process x 16: same losses step by step, one model, one set of rows."""
    import json
    import os
    import subprocess
    import sys

    from stseval.methods.simcse import SETTINGS_FILE

    env = dict(os.environ, STSEVAL_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    common = ["-m", "stseval.cli", "simcse-train", "--model", str(simcse_bert), "--tasks", "STS-B", "--data-dir",
              str(sts_b_dir), "--pooling", "cls", "--dropout", "0", "--lr", "1e-3", "--bootstrap", "0",
              "--curve-pairs", "0", "--device", "cpu"]
    runs = {}
    for name, launcher, batch in (("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                           "--master_port", str(free_port())], 8),
                                  ("one", [sys.executable], 16)):
        out, runs_dir = tmp_path / name / "out", tmp_path / name / "runs"
        command = [*launcher, *common, "--batch-size", str(batch), "--out", str(out), "--runs-dir", str(runs_dir)]
        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-3000:]
        models = [path.parent for path in (runs_dir / "simcse").glob(f"*/{SETTINGS_FILE}")]
        assert len(models) == 1, models
        rows = pd.read_csv(out / "simcse.csv", dtype=str, keep_default_na=False)
        assert list(zip(rows["method"], rows["metric"], strict=True)) == [
            ("raw", "spearman_cosine"), ("simcse", "spearman_cosine"), ("simcse", "spearman_cosine_minus_raw")]
        runs[name] = json.loads((models[0] / SETTINGS_FILE).read_text(encoding="utf-8"))["result"]
    assert runs["two"]["world_size"] == 2 and runs["one"]["world_size"] == 1
    assert runs["two"]["steps"] == runs["one"]["steps"] == 6  # 96 sentences / 16
    np.testing.assert_allclose(runs["two"]["losses"], runs["one"]["losses"], rtol=0, atol=2e-4)
    assert runs["one"]["losses"][-1] < runs["one"]["losses"][0]  # it trained: a wrong gradient would diverge
