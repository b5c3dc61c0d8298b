"""report/drawing.py: the training-curve and sweep PNGs: written where runs expect them, of a fixed size, the same
bytes for the same rows, and drawn without loading faiss."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd

from stseval.report import drawing
from stseval.report.drawing import plot_sweep, plot_training_curve, write_curve_plots, write_sweep_plot
from stseval.runs.results import ResultRow, cell_key, rows_to_frame, write_frame

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG's IHDR chunk (bytes 16..24, big-endian)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


def write_curve(path: Path) -> Path:
    pd.DataFrame({"step": [0, 10, 20], "valid_spearman": [0.41, 0.52, 0.55],
                  "train_loss": [math.nan, 2.1, 1.7]}).to_csv(path, index=False)
    return path


def test_training_curve_png_is_fixed_size_and_reproducible(tmp_path):
    curve = write_curve(tmp_path / "curve.csv")
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    plot_training_curve(curve, first, "STS-B cls dropout 0.1")
    plot_training_curve(curve, second, "STS-B cls dropout 0.1")
    assert png_size(first) == (704, 396)  # figsize (6.4, 3.6) inches x dpi 110
    assert first.read_bytes() == second.read_bytes()  # no clock or machine in the file
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no temporary file left


def test_curve_plots_land_beside_their_csv(tmp_path):
    (tmp_path / "run1").mkdir()
    curves = [(write_curve(tmp_path / "run1" / "curve.csv"), "one"), (write_curve(tmp_path / "run2.csv"), "two")]
    written = write_curve_plots(curves)
    assert written == [tmp_path / "run1" / "curve.png", tmp_path / "run2.png"]
    assert all(path.read_bytes()[:8] == PNG_SIGNATURE for path in written)


CORPUS_SIZES = {"STS-B": 2000, "ATEC": 40000}


def sweep_rows(tasks=("STS-B", "ATEC"), n_corpus=CORPUS_SIZES) -> list[ResultRow]:
    rows = []
    for task in tasks:
        for method in ("raw-truncate", "whitening"):
            for dims, n_dims in (("full", 384), ("64", 64), ("16", 16)):
                for metric, value in (("recall@10", n_dims / 500), ("qps", 1e5 / n_dims)):
                    rows.append(ResultRow(model="m", pooling="cls", method=method, dims=dims, task=task, split="test",
                                          metric=metric, value=value, status="ok", n_corpus=str(n_corpus[task]),
                                          n_dims=str(n_dims), data_sha256=f"sha-{task}", model_fingerprint="fp"))
    return rows


def test_sweep_plot_has_a_column_per_task_and_marks_8_33_ln_n(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(drawing, "su_min_dims", lambda n: asked.append(n) or 8.33 * math.log(n))
    path = tmp_path / "sweep.png"
    plot_sweep(rows_to_frame(sweep_rows()), path)
    # figsize (3.6 x 2 tasks + 0.8, 6.4) inches x dpi 120 = (8.0 x 120, 6.4 x 120); 8.0 x 120 in floats is
    # 960.0000000000002 and matplotlib truncates it to 960
    assert png_size(path) == (960, 768)
    # each task's panels (recall@10 and qps) draw the line at 8.33 ln N of its own corpus; ATEC first (TASKS order),
    # twice per panel: the line and its label
    assert asked == [40000] * 4 + [2000] * 4


def test_sweep_plot_of_the_same_rows_is_the_same_bytes(tmp_path):
    frame = rows_to_frame(sweep_rows(tasks=("BQ",), n_corpus={"BQ": 500}))
    plot_sweep(frame, tmp_path / "a.png")
    plot_sweep(frame.iloc[::-1], tmp_path / "b.png")  # row order does not matter
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert png_size(tmp_path / "a.png") == (528, 768)  # (3.6 + 0.8) x 120 = 528, 6.4 x 120 = 768


def test_write_sweep_plot_draws_the_chosen_cells_or_nothing(tmp_path):
    rows = sweep_rows()
    results = tmp_path / "sweep.csv"
    write_frame(rows_to_frame(rows), results)
    assert write_sweep_plot(results, tmp_path / "all.png") == tmp_path / "all.png"
    chosen = frozenset(cell_key(row) for row in rows if row.task == "ATEC")
    assert write_sweep_plot(results, tmp_path / "atec.png", chosen) == tmp_path / "atec.png"
    assert png_size(tmp_path / "atec.png") == (528, 768)  # one task column
    assert write_sweep_plot(results, tmp_path / "none.png", frozenset()) is None
    assert not (tmp_path / "none.png").exists()


def test_the_sweep_plot_loads_no_faiss(tmp_path):
    """8.33 ln N comes from evaluation.retrieval (numpy), not methods.index (faiss, ~0.2 s and a native library)."""
    script = (
        "import sys\n"
        "from stseval.report.drawing import plot_sweep\n"
        "from stseval.runs.results import ResultRow, rows_to_frame\n"
        "rows = [ResultRow(model='m', pooling='cls', method='whitening', dims=d, task='BQ', split='test', metric=m,\n"
        "                  value=0.5, status='ok', n_corpus='500', n_dims=d) for d in ('8', '16')\n"
        "        for m in ('recall@10', 'qps')]\n"
        f"plot_sweep(rows_to_frame(rows), {str(tmp_path / 'sweep.png')!r})\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'faiss'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "", "MPLBACKEND": "Agg"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
