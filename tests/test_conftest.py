"""A missing input (the shared data, a committed results file) skips locally and fails under CI=true."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import missing_input

ROOT = Path(__file__).resolve().parents[1]
# one test that needs the shared data through the shared_data_dir fixture, and one that needs none
DATA_TEST = "tests/test_tasks.py::test_bq_test_line_4284_is_unquoted"


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_input_fails_under_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="missing input under CI=true: data/BQ"):
        missing_input("data/BQ")


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_missing_input_skips_locally_and_says_what_is_missing(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="missing input: data/BQ"):
        missing_input("data/BQ")


def _pytest_with_empty_data(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    empty = tmp_path / "empty-data"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["STSEVAL_TEST_SHARED_DATA"] = str(empty)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", DATA_TEST],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_run_without_the_data_folder_fails_under_ci(tmp_path):
    result = _pytest_with_empty_data(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    # a fixture that fails is reported as an error of the test that needs it
    assert "1 error" in result.stdout and f"missing input under CI=true: real data (*/*.data) not found at " \
        f"{tmp_path / 'empty-data'}" in result.stdout


def test_a_run_without_the_data_folder_skips_locally_naming_the_folder(tmp_path):
    result = _pytest_with_empty_data(tmp_path, ci=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and f"missing input: real data (*/*.data) not found at " \
        f"{tmp_path / 'empty-data'}" in result.stdout
