"""The committed grids are what `stseval report` makes of the committed results, byte for byte."""

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import missing_input
from stseval.cli import app

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_report.sh"


def report_commands() -> list[list[str]]:
    """The `stseval report` lines of scripts/make_report.sh, as argument lists."""
    return [shlex.split(line)[1:] for line in SCRIPT.read_text().splitlines()
            if line.startswith(".venv/bin/stseval report")]


@pytest.mark.parametrize("args", report_commands(), ids=lambda args: args[args.index("--name") + 1])
def test_report_reproduces_committed_grid(args, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    inputs = [ROOT / arg for arg in args[1:args.index("--out")]]
    absent = [str(path.relative_to(ROOT)) for path in inputs if not path.exists()]
    if absent:
        missing_input(f"results inputs of scripts/make_report.sh not committed: {', '.join(absent)}")
    committed_dir = ROOT / args[args.index("--out") + 1]
    args[args.index("--out") + 1] = str(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    written = sorted(p for p in tmp_path.iterdir() if p.suffix in (".csv", ".md"))
    assert written
    for path in written:
        committed = committed_dir / path.name
        assert committed.is_file(), f"{committed} is not committed; run scripts/make_report.sh"
        assert path.read_bytes() == committed.read_bytes(), f"{committed} differs from what report makes now"
