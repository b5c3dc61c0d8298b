"""The wheel: built offline from the source, installed into a fresh venv outside the checkout, it works.

The fresh venv gets only the wheel (pip --no-deps); its dependencies (torch, transformers, ...) are
this interpreter's, made visible by a .pth line naming this interpreter's site-packages. A plain path
line runs none of the .pth files there, so the editable-install finder that maps `stseval` to the
checkout stays inactive: the test checks that `stseval` is imported from the venv, and every command
runs with its working directory in a temporary folder, without PYTHONPATH, so nothing can fall back on
the source tree's data/manifest.json or reference tables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tiny_models import make_bert

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = ["stseval/data/manifest.json",
                *sorted(str(path.relative_to(ROOT))
                        for path in (ROOT / "stseval" / "data" / "reference").glob("*.csv"))]


def _run(args: list, cwd: Path, env: dict, timeout_s: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout_s)
    assert result.returncode == 0, \
        f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _clean_env(**extra: str) -> dict:
    """This environment without anything that points Python or stseval at the checkout."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "STSEVAL_DATA_DIR", "VIRTUAL_ENV")}
    return {**env, "HF_HUB_OFFLINE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built without network or build isolation from a copy of the sources (no build/ in the checkout)."""
    scratch = tmp_path_factory.mktemp("wheel-build")
    source = scratch / "source"
    shutil.copytree(ROOT / "stseval", source / "stseval", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
          "--wheel-dir", scratch / "dist", source], cwd=scratch, env=_clean_env())
    [built] = (scratch / "dist").glob("stseval-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel, with this interpreter's installed dependencies visible."""
    folder = tmp_path_factory.mktemp("fresh") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", folder], cwd=folder.parent, env=_clean_env())
    python = folder / "bin" / "python"
    # install before the .pth exists, so pip sees an empty venv and leaves this interpreter's stseval alone
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
         cwd=folder.parent, env=_clean_env())
    fresh_site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      cwd=folder.parent, env=_clean_env()).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(fresh_site) / "stseval-test-dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    return folder


def test_wheel_holds_the_package_data_and_no_repository_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert len(PACKAGE_DATA) >= 3  # the manifest and at least su2021.csv, mteb_e5.csv
    for name in PACKAGE_DATA + ["stseval/api.py", "stseval/__init__.py", "stseval/cli.py"]:
        assert name in names, f"{name} is missing from {wheel.name}"
    manifest = json.loads(zipfile.ZipFile(wheel).read("stseval/data/manifest.json"))
    assert manifest == json.loads((ROOT / "stseval" / "data" / "manifest.json").read_text(encoding="utf-8"))
    assert not [name for name in names if name.split("/")[0] in ("tests", "results", "scripts", "benchmarks", "docs")]
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "stseval = stseval.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_tasks_whiten_report_and_the_api_outside_the_checkout(
        venv, shared_data_dir, sample_data_dir, tmp_path):
    work = tmp_path / "work"  # the current folder of every command: not the checkout, no data in it
    work.mkdir()
    env = _clean_env(STSEVAL_HOME=str(tmp_path / "home"))
    python, stseval_script = venv / "bin" / "python", venv / "bin" / "stseval"
    model = make_bert(tmp_path / "tiny-bert", with_pooler=False)

    where = json.loads(_run([python, "-c", (
        "import json, sys, stseval\n"
        "light = not any(m.split('.')[0] in ('torch', 'pandas', 'faiss') for m in sys.modules)\n"
        "from stseval.data import tasks\n"
        "from stseval.report import grids\n"
        "print(json.dumps({'init': stseval.__file__, 'root': str(tasks.PROJECT_ROOT), 'light': light,\n"
        "                  'manifest': str(tasks.MANIFEST_PATH), 'reference': str(grids.REFERENCE_DIR)}))")],
        cwd=work, env=env).stdout)
    for key in ("init", "manifest", "reference"):
        assert Path(where[key]).resolve().is_relative_to(venv.resolve()), (key, where[key])
    assert where["root"] == "None" and where["light"]

    tasks = _run([stseval_script, "tasks", "--data-dir", shared_data_dir], cwd=work, env=env).stdout
    found = [line for line in tasks.splitlines() if " found " in line]
    assert len(found) >= 5 and all(line.rstrip().endswith("sha256 ok") for line in found), tasks  # the wheel's manifest

    out = tmp_path / "out"
    _run([stseval_script, "whiten", "--model", model, "--data-dir", sample_data_dir, "--tasks", "STS-B",
          "--pooling", "last-avg", "--dims", "full,8", "--fit-on", "test", "--bootstrap", "0", "--out", out],
         cwd=work, env=env)
    rows = pd.read_csv(out / "whiten.csv", keep_default_na=False)
    assert sorted(zip(rows.method, rows.dims.astype(str), strict=True)) == [
        ("raw", "full"), ("whitening", "8"), ("whitening", "full")]
    assert (rows.status == "ok").all() and rows.value.astype(float).between(-1, 1).all()
    assert (rows.n_pairs.astype(int) == 300).all()

    report = tmp_path / "report"
    _run([stseval_script, "report", out, "--reference", "su2021", "--reference", "mteb", "--out", report],
         cwd=work, env=env)
    grid = (report / "spearman_cosine_test.md").read_text(encoding="utf-8")
    # published rows, from the wheel's package data
    assert "| mteb:intfloat/multilingual-e5-small |" in grid and "| Su2021:BERT |" in grid, grid

    scores = json.loads(_run([python, "-c", (
        "import sys, stseval\n"
        "frame = stseval.evaluate(sys.argv[1], tasks='STS-B', pooling='last-avg', data_dir=sys.argv[2],\n"
        "                         n_resamples=0)\n"
        "print(frame.to_json(orient='records'))"), model, sample_data_dir], cwd=work, env=env).stdout)
    raw = rows[rows.method == "raw"].value.astype(float).item()
    assert [(s["task"], s["pooling"], s["n_pairs"]) for s in scores] == [("STS-B", "last-avg", 300)]
    assert scores[0]["spearman"] == pytest.approx(raw, abs=1e-6)  # the API scores what the CLI scores
    assert list(work.iterdir()) == []  # nothing was written into the current folder
