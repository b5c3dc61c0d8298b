"""pyproject.toml and scripts/setup.sh: what a fresh install runs."""

import os
import shutil
import subprocess
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_license_raises_no_setuptools_deprecation_warning():
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distribution = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert distribution.metadata.license_expression == "MIT"
    assert not [w for w in caught if "license" in str(w.message).lower()], [str(w.message) for w in caught]


def _run_setup(tmp_path: Path, **env) -> list[str]:
    """Run a copy of scripts/setup.sh against a fake .venv/bin/python; return the commands it ran."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "$@" >> "$CALLS"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], check=True,
                   env={**os.environ, "CALLS": str(calls), **env})
    return calls.read_text().splitlines()


def test_setup_installs_pinned_torch_first_from_pips_own_configuration(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_INDEX_URL", raising=False)
    calls = _run_setup(tmp_path)
    torch_call = [call for call in calls if "torch==2.13.0" in call]
    assert torch_call == ["-m pip install --quiet torch==2.13.0"]  # no index of its own: pip.conf decides
    assert calls.index(torch_call[0]) < calls.index("-m pip install --quiet -e .[test,onnx,minilm,use]")


def test_setup_takes_torch_from_torch_index_url_when_set(tmp_path):
    calls = _run_setup(tmp_path, TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu")
    assert "-m pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in calls


def test_each_bundled_model_extra_installs_the_package_stseval_looks_in():
    import tomllib

    from stseval.encoders.bundled import BUNDLED_MODELS

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    for model in BUNDLED_MODELS:  # the error message says: pip install 'stseval[EXTRA]'
        assert [requirement.split("==")[0] for requirement in extras[model.extra]] == [model.distribution]


def test_test_extra_installs_the_lint_and_type_gate():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    names = {requirement.split(">=")[0].split("==")[0] for requirement in extras["test"]}
    assert {"pytest", "ruff", "mypy"} <= names  # scripts/test.sh calls .venv/bin/ruff and .venv/bin/mypy


def _run_test_script(tmp_path: Path, *args: str, **exit_codes: int) -> tuple[int, list[str]]:
    """Run a copy of scripts/test.sh with a no-op setup.sh and fake ruff / mypy / python that log their
    arguments and exit with exit_codes[name] (0 unless given); return test.sh's exit code and the log."""
    (tmp_path / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / "scripts" / "setup.sh").write_text("exit 0\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    for name in ("ruff", "mypy", "python"):
        fake = tmp_path / ".venv" / "bin" / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\nexit {exit_codes.get(name, 0)}\n')
        fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    done = subprocess.run(["bash", str(tmp_path / "scripts" / "test.sh"), *args], capture_output=True,
                          env={**os.environ, "CALLS": str(calls)})
    return done.returncode, calls.read_text().splitlines() if calls.exists() else []


def test_test_script_runs_ruff_and_mypy_before_pytest(tmp_path):
    status, calls = _run_test_script(tmp_path, "-x", "tests/test_metrics.py")
    assert status == 0
    assert calls == ["ruff check stseval tests benchmarks scripts", "mypy ",
                     "python -m pytest -q -x tests/test_metrics.py"]


def test_test_script_fails_without_running_pytest_when_ruff_fails(tmp_path):
    status, calls = _run_test_script(tmp_path, ruff=1)
    assert status != 0
    assert [call.split()[0] for call in calls] == ["ruff"]


def test_test_script_fails_without_running_pytest_when_mypy_fails(tmp_path):
    status, calls = _run_test_script(tmp_path, mypy=1)
    assert status != 0
    assert [call.split()[0] for call in calls] == ["ruff", "mypy"]


def test_test_script_passes_pytest_failures_through_and_treats_no_tests_as_one(tmp_path):
    assert _run_test_script(tmp_path / "failed", python=1)[0] == 1
    assert _run_test_script(tmp_path / "error", python=2)[0] == 2
    assert _run_test_script(tmp_path / "none", python=5)[0] == 1


def test_license_file_is_the_mit_licence_pyproject_declares():
    import tomllib

    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 stseval developers" in text
    assert "WITHOUT WARRANTY OF ANY KIND" in text
    assert tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"] == "MIT"


def _ignored(relative: str) -> bool:
    """Whether git ignores a path of the checkout (it need not exist)."""
    result = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", relative],
                            capture_output=True, text=True)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0


def test_data_folder_keeps_its_readme_and_ignores_the_task_files():
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    for needed in ("stseval data import", "stseval data fetch", "--data-dir", "STSEVAL_DATA_DIR",
                   "{TASK}/{TASK}.{train,valid,test}.data", *("ATEC", "BQ", "LCQMC", "PAWSX", "STS-B")):
        assert needed in readme, needed
    assert not _ignored("data/README.md")
    for data_file in ("data/chinese-sts/BQ/BQ.test.data", "data/senteval_cn.zip", "data/STS-B/STS-B.test.data"):
        assert _ignored(data_file), data_file
