"""The README's commands, run as written on tiny data, leave the committed results/ untouched.

Each `stseval ...` line of the README's bash blocks runs with its own options; only what makes it
small is added (a tiny random BERT, a few hundred pairs per split, small dims, no bootstrap). They run
in a scratch folder that is a git repository holding a copy of results/, so a relative write into
results/ (the old defaults) shows in `git status --porcelain results/`; the real checkout's results/
is checked too. The scripts in scripts/ that produce results/ are run against a stand-in stseval that
records its arguments, to check each passes --out into results/ explicitly.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stseval.cli import app
from stseval.common.errors import StsevalError
from tiny_models import make_bert

ROOT = Path(__file__).resolve().parents[1]
WRITING_COMMANDS = {("whiten",): "runs/whitening", ("simcse-train",): "runs/simcse", ("cosent-train",): "runs/cosent",
                    ("index", "sweep"): "runs/retrieval", ("report",): "runs/report"}


def readme_commands() -> list[list[str]]:
    """Argument lists of every stseval command in the README's bash code blocks."""
    commands, in_bash = [], False
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_bash = line.strip() == "```bash"
            continue
        if not in_bash:
            continue
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words and Path(words[0]).name == "stseval":
                commands.append(words[1:])
    return commands


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def _small(args: list[str], model: Path, data_dir: Path) -> list[str]:
    """The same command, made small: tiny model and data, dims the 32-d model has, few sentences."""
    shrink = {"128": "16", "64": "8", "256": "16", "2000": "16", "640": "16"}
    small = [shrink.get(arg, arg) if previous in ("--dims", "--whiten-dims", "--max-sentences") else arg
             for previous, arg in zip([""] + args, args, strict=False)]  # each arg after the one before it
    small = [",".join(shrink.get(part, part) for part in arg.split(",")) if previous == "--dims" else arg
             for previous, arg in zip([""] + small, small, strict=False)]
    command = tuple(small[:2]) if small[0] == "index" else (small[0],)
    if command in {("whiten",), ("simcse-train",), ("cosent-train",), ("index", "build"), ("index", "sweep"),
                   ("export",)}:
        small += ["--model", str(model), "--data-dir", str(data_dir)]
    if command in {("whiten",), ("simcse-train",), ("cosent-train",)}:
        small += ["--bootstrap", "0"]
    if command in {("whiten",), ("index", "sweep")} and "--dims" not in small:
        small += ["--dims", "full,16,8"]  # the defaults go up to 256
    if command in {("simcse-train",), ("cosent-train",)}:
        small += ["--batch-size", "8", "--max-eval-pairs", "50", "--checkpoint-steps", "1000"]
    if command == ("tasks",):
        small += ["--data-dir", str(data_dir)]
    return small


def test_readme_has_examples_of_every_writing_command():
    shapes = {tuple(args[:2]) if args[0] == "index" else (args[0],) for args in readme_commands()}
    assert {("whiten",), ("simcse-train",), ("cosent-train",), ("export",), ("report",), ("index", "build"),
            ("index", "search"), ("tasks",)} <= shapes


def test_readme_examples_run_and_leave_results_untouched(sample_data_dir, tmp_path, monkeypatch):
    real_before = git(ROOT, "status", "--porcelain", "--", "results")
    scratch = tmp_path / "checkout"
    shutil.copytree(ROOT / "results", scratch / "results")
    git(scratch, "init", "-q")
    git(scratch, "add", "results")
    git(scratch, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "committed results")
    model = make_bert(tmp_path / "tiny-bert", with_pooler=False)
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(scratch)

    runner = CliRunner()
    for args in readme_commands():
        small = _small(args, model, sample_data_dir)
        result = runner.invoke(app, small)
        assert result.exit_code == 0, f"stseval {shlex.join(small)}\n{result.output}"
        assert git(scratch, "status", "--porcelain", "--", "results") == "", \
            f"stseval {shlex.join(args)} wrote into results/"
    assert git(ROOT, "status", "--porcelain", "--", "results") == real_before
    tops = {path.relative_to(scratch).parts[0] for path in scratch.rglob("*") if path.is_file()}
    assert tops == {".git", "results", "runs"}  # everything the examples wrote is under runs/
    assert list((scratch / "runs" / "kernels").glob("*.npz"))  # --save-kernel runs/kernels did save


@pytest.mark.parametrize("command, folder", WRITING_COMMANDS.items(),
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_writing_commands_default_to_runs(command, folder):
    help_text = " ".join(CliRunner().invoke(app, [*command, "--help"]).output.split())
    assert f"[default: {folder}]" in help_text


def _script_calls(script: str, tmp_path: Path) -> list[list[str]]:
    """Run a copy of scripts/<script> with .venv/bin/stseval recording its arguments instead of running."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / script, checkout / "scripts" / script)
    shutil.copy(ROOT / "README.md", checkout / "README.md")  # make_report.sh pastes the main grid into it
    (checkout / "results" / "report").mkdir(parents=True)
    (checkout / "results" / "report" / "main.md").write_text("| grid |\n", encoding="utf-8")
    fake = checkout / ".venv" / "bin" / "stseval"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "open(os.environ['CALLS'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                    "with open(os.environ['CALLS'] + '.env', 'a') as env:\n"
                    "    env.write(os.environ.get('STSEVAL_WRITE_RESULTS', '') + '\\n')\n")
    fake.chmod(0o755)
    (checkout / ".venv" / "bin" / "python").symlink_to(sys.executable)
    calls = tmp_path / "calls.jsonl"
    subprocess.run(["bash", str(checkout / "scripts" / script)], check=True, env={**os.environ, "CALLS": str(calls)},
                   capture_output=True)
    return [json.loads(line) for line in calls.read_text().splitlines()]


@pytest.mark.parametrize("script", ["reproduce_whitening.sh", "reproduce_simcse.sh", "reproduce_retrieval.sh",
                                    "make_report.sh"])
def test_scripts_that_produce_results_pass_out_explicitly(script, tmp_path):
    calls = _script_calls(script, tmp_path)
    assert calls
    for args in calls:
        command = tuple(args[:2]) if args[0] == "index" else (args[0],)
        assert command in WRITING_COMMANDS
        assert "--out" in args and args[args.index("--out") + 1].startswith("results/"), args


@pytest.mark.parametrize("script", ["reproduce_whitening.sh", "reproduce_simcse.sh", "reproduce_retrieval.sh",
                                    "make_report.sh"])
def test_scripts_that_produce_results_are_let_through_the_results_guard(script, tmp_path, monkeypatch):
    """stseval refuses --out results/... from the command line; each script sets what lets it write there."""
    from stseval import options

    calls = _script_calls(script, tmp_path)
    environments = (tmp_path / "calls.jsonl.env").read_text().splitlines()
    assert len(environments) == len(calls)
    for args, value in zip(calls, environments, strict=True):
        out = ROOT / args[args.index("--out") + 1]
        monkeypatch.setenv(options.WRITE_RESULTS_ENV, value)
        options.check_out_dir(out, force="--force" in args)  # raises if the script's call would be refused
        monkeypatch.delenv(options.WRITE_RESULTS_ENV)
        with pytest.raises(StsevalError, match="--force"):
            options.check_out_dir(out, force=False)  # the same call typed by hand is refused


def test_every_script_that_writes_results_is_checked():
    writers = {path.name for path in (ROOT / "scripts").glob("*.sh")
               if any(f"stseval {' '.join(command)}" in path.read_text() for command in WRITING_COMMANDS)}
    assert writers == {"reproduce_whitening.sh", "reproduce_simcse.sh", "reproduce_retrieval.sh", "make_report.sh"}
