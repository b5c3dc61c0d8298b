"""The command line's own behaviour: one-line usage errors, help texts, defaults, fast option checks."""

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from stseval.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _commands(command=None, path=()):
    """(path, click command) for every leaf command of the app."""
    command = command or typer.main.get_command(app)
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


COMMANDS = list(_commands())


@pytest.mark.parametrize("args, phrase", [
    (["whiten", "--bogus"], "No such option: --bogus"),
    (["report", "a.csv", "b.csv", "--split"], "requires an argument"),
    (["tasks", "extra"], "unexpected extra argument"),
    (["simcse-train", "--then-whiten", "true"], "--then-whiten is a flag"),
    (["whiten", "--batch-size", "abc"], "Invalid value for '--batch-size'"),
    (["index", "nosuch"], "No such command 'nosuch'"),
])
def test_usage_errors_are_one_line_with_exit_code_2(args, phrase):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stseval: ") and phrase in lines[0]
    assert "╭" not in result.output and "Usage:" not in result.output


def test_a_mistyped_command_gets_a_suggestion_and_a_pointer_to_help_in_one_sentence_each():
    result = runner.invoke(app, ["whitne"], prog_name="stseval")
    assert result.exit_code == 2
    assert result.stderr.strip() == "stseval: No such command 'whitne'. Did you mean 'whiten'? See stseval --help"
    nested = runner.invoke(app, ["index", "serch"], prog_name="stseval")
    assert nested.stderr.strip() == "stseval: No such command 'serch'. Did you mean 'search'? See stseval index --help"


def test_version_prints_the_package_version_and_exits_0():
    import tomllib

    from stseval import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"stseval {__version__}\n"
    assert __version__ == tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_no_arguments_prints_the_help_and_exits_0():
    result = runner.invoke(app, [])
    assert result.exit_code == 0 and "Commands:" in result.output and "whiten" in result.output


def _command_id(value) -> str:
    """Test id: the command path ("index build"); nothing for the command object beside it."""
    return " ".join(value) if isinstance(value, tuple) else ""


@pytest.mark.parametrize("path, command", COMMANDS, ids=_command_id)
def test_every_command_has_an_example_and_help_for_every_option(path, command):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: stseval " + " ".join(path) in " ".join(result.output.split())
    undocumented = [param.name for param in command.params if not getattr(param, "help", None)]
    assert not undocumented, f"{' '.join(path)}: options without help: {undocumented}"
    assert "<bool>" not in result.output  # boolean flags show as flags


@pytest.mark.parametrize("group", [[], ["data"], ["index"]])
def test_every_group_help_has_an_example(group):
    result = runner.invoke(app, [*group, "--help"])
    assert result.exit_code == 0 and "Example: stseval" in result.output


def test_flags_show_without_a_value():
    help_text = runner.invoke(app, ["report", "--help"]).output
    best = next(line for line in help_text.splitlines() if line.strip().startswith("--best"))
    assert best.split()[:2] == ["--best", "Bold"]


def test_simcse_device_help_says_where_training_runs():
    help_text = " ".join(runner.invoke(app, ["simcse-train", "--help"]).output.split())
    assert "Training itself runs" in help_text and "CUDA_VISIBLE_DEVICES" in help_text


@pytest.mark.parametrize("path, command", COMMANDS, ids=_command_id)
def test_no_default_writes_into_the_committed_results(path, command):
    for param in command.params:
        default = str(param.default) if param.default is not None else ""
        assert not default.startswith("results"), f"{' '.join(path)} {param.name} defaults to {default}"
    outs = [param for param in command.params if param.name == "out" and not param.required]
    for param in outs:  # a required --out (export) has no default to write into
        assert str(param.default).startswith("runs/")


@pytest.mark.parametrize("args, message", [
    (["whiten", "--tasks", "STBS"], "--tasks: unknown task 'STBS'; did you mean STS-B?"),
    (["whiten", "--fit-on", "task:BQQ"], "--fit-on task:BQQ: unknown task 'BQQ'; did you mean BQ?"),
    (["simcse-train", "--tasks", "ATCE"], "--tasks: unknown task 'ATCE'; did you mean ATEC?"),
    (["index", "build", "--task", "lcqmcc", "--index-dir", "x"], "--task: unknown task 'lcqmcc'; did you mean LCQMC?"),
    (["index", "sweep", "--tasks", "PAWS"], "--tasks: unknown task 'PAWS'; did you mean PAWSX?"),
    (["data", "fetch", "--tasks", "STS-BB"], "--tasks: unknown task 'STS-BB'; did you mean STS-B?"),
])
def test_every_command_refuses_unknown_task_names_with_a_suggestion(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize("args, message", [
    (["whiten", "--pooling", "lastavg"], "--pooling: unknown pooling 'lastavg'; did you mean last-avg? choose from"),
    (["simcse-train", "--pooling", "clss"], "--pooling: unknown pooling 'clss'; did you mean cls? choose from"),
    (["index", "sweep", "--pooling", "first_last_avg"], "'first_last_avg'; did you mean first-last-avg?"),
    (["whiten", "--fit-on", "tset"], "--fit-on: 'tset' is not one of all-available, train, valid, test, pooled, "
                                     "task:NAME, a file path; did you mean test?"),
    (["whiten", "--fit-on", "no/such/sentences.txt"], "--fit-on: file not found: no/such/sentences.txt"),
    (["simcse-train", "--train-on", "missing.txt"], "--train-on: file not found: missing.txt"),
])
def test_unknown_poolings_and_sources_get_a_suggestion_or_name_the_missing_file(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr


def test_task_name_aliases_are_documented_where_tasks_are_named():
    for args in (["whiten"], ["simcse-train"], ["index", "sweep"], ["data", "fetch"]):
        help_text = " ".join(runner.invoke(app, [*args, "--help"]).output.split())
        assert "STSB, sts-b, STS_B, lcqmc, PAWS-X" in help_text, args


# Bad options that need no model: each must fail before torch (3 s to import here) is loaded.
FAST_ERRORS = [
    ["whiten", "--pooling", "bogus"],
    ["whiten", "--dims", "0"],
    ["whiten", "--tasks", "FOO"],
    ["whiten", "--fit-on", "nofile.txt"],
    ["whiten", "--split", "nosuch", "--tasks", "STS-B"],
    ["whiten", "--fit-on", "train", "--tasks", "PAWSX"],
    ["simcse-train", "--dropout", "2"],
    ["simcse-train", "--loss", "bogus"],
    ["simcse-train", "--max-sentences", "1"],
    ["simcse-train", "--train-on", "nofile.txt"],
    ["simcse-train", "--max-eval-pairs", "3"],
    ["index", "sweep", "--methods", "bogus"],
    ["index", "sweep", "--pooling", "cls,max"],
    ["index", "build", "--index-dir", "x"],
    ["whiten", "--precision", "fp16"],
    ["whiten", "--precision", "bf16", "--backend", "int8"],
    ["whiten", "--threads", "0"],
    ["simcse-train", "--threads", "100000"],
    ["index", "build", "--task", "STS-B", "--index-dir", "x", "--precision", "fp8"],
    ["index", "sweep", "--threads", "100000"],
    ["index", "build", "--task", "STS-B", "--sentences", "s.txt", "--index-dir", "x"],
    ["index", "build", "--sentences", "missing.txt", "--index-dir", "x"],
    ["index", "search", "--index-dir", "no-such-index", "q"],
    ["report", "no-such-file.csv"],
    ["tasks", "--data-dir", "/no/such/folder"],
    # an --out no one can write (here: under a file, which refuses even root) is an option error too
    ["whiten", "--tasks", "STS-B", "--out", "pyproject.toml/out"],
    ["whiten", "--tasks", "STS-B", "--save-kernel", "pyproject.toml/kernels"],
    ["simcse-train", "--tasks", "STS-B", "--out", "pyproject.toml/out"],
    ["simcse-train", "--tasks", "STS-B", "--runs-dir", "pyproject.toml/runs"],
    ["index", "sweep", "--tasks", "STS-B", "--out", "pyproject.toml/out"],
    ["index", "build", "--task", "STS-B", "--index-dir", "pyproject.toml/index"],
    ["whiten", "--model", "./no/such/model", "--tasks", "STS-B"],
    ["simcse-train", "--model", "./no/such/model", "--tasks", "STS-B"],
    ["index", "sweep", "--model", "./no/such/model+int8", "--tasks", "STS-B"],
    ["index", "build", "--model", "~/no/such/model", "--task", "STS-B", "--index-dir", "x"],
]


def test_option_errors_fail_before_torch_is_imported(shared_data_dir, tmp_path):
    script = (
        "import sys\n"
        "from stseval.cli import app\n"
        "codes = []\n"
        f"for args in {FAST_ERRORS!r}:\n"
        "    try:\n"
        "        app(args, prog_name='stseval')\n"
        "    except SystemExit as exit:\n"
        "        codes.append(exit.code)\n"
        "print(codes, 'torch' in sys.modules, 'faiss' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "STSEVAL_HOME": str(tmp_path),
                                 "STSEVAL_DATA_DIR": str(shared_data_dir)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("]")[1].split() == ["False", "False"], result.stdout
    assert result.stdout.startswith("[" + ", ".join(["2"] * len(FAST_ERRORS)) + "]"), result.stdout + result.stderr
    messages = result.stderr.strip().splitlines()
    assert len(messages) == len(FAST_ERRORS) and all(line.startswith("stseval: ") for line in messages)


def test_dims_larger_than_the_model_fail_from_its_config_before_loading(tmp_path):
    from tiny_models import make_bert

    model = make_bert(tmp_path / "bert")
    script = (
        "import sys\n"
        "from stseval.cli import app\n"
        "try:\n"
        f"    app(['whiten', '--model', {str(model)!r}, '--dims', 'full,64', '--tasks', 'STS-B'],\n"
        "        prog_name='stseval')\n"
        "except SystemExit as exit:\n"
        "    print(exit.code, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stdout + result.stderr
    assert "--dims: 64 is larger than" in result.stderr and "vector size 32" in result.stderr


@pytest.mark.parametrize("command", [
    ["whiten", "--pooling", "cls", "--dims", "full"],
    ["simcse-train", "--pooling", "cls", "--dropout", "0.1"],
    ["index", "sweep", "--dims", "full"],
    ["index", "build", "--task", "STS-B"],
])
def test_a_bad_data_line_is_refused_before_any_model_loads(command, sample_data_dir, tmp_path, monkeypatch):
    import shutil

    import stseval.encoders.encoder as encoders

    data_dir = tmp_path / "data"
    shutil.copytree(sample_data_dir / "STS-B", data_dir / "STS-B")
    test_file = next((data_dir / "STS-B").glob("*test*"))
    n_lines = len(test_file.read_bytes().splitlines())
    with open(test_file, "a", encoding="utf-8") as handle:
        handle.write("一个句子\t另一个句子\tnot-a-score\n")

    def never(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was checked")

    monkeypatch.setattr(encoders, "load_encoder", never)
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    where = ["--index-dir", str(tmp_path / "index")] if command[1:2] == ["build"] else \
        ["--tasks", "STS-B", "--out", str(tmp_path / "out")]
    result = runner.invoke(app, [*command, *where, "--data-dir", str(data_dir)])
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("stseval: ") and f"{test_file.name}:{n_lines + 1}" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "index").exists()


@pytest.mark.parametrize("args", [
    ["whiten", "--model", "default", "--model", "./no/such/model", "--fit-on", "test"],
    ["simcse-train", "--model", "/no/such/model"],
    ["index", "sweep", "--model", "./no/such/model+onnx"],
    ["index", "build", "--model", "no/such/model", "--task", "STS-B", "--index-dir", "idx"],
])
def test_a_missing_model_folder_fails_before_the_model_loader_is_called(args, tmp_path, monkeypatch):
    import stseval.encoders.encoder as encoder_module
    from stseval.data.tasks import TASKS, split_path

    for split in ("valid", "test"):
        path = split_path(TASKS["STS-B"], split, tmp_path / "data")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"句子{i}\t句子{i + 1}\t{i % 5}\n" for i in range(12)), encoding="utf-8")
    loads: list[str] = []
    monkeypatch.setattr(encoder_module, "load_encoder", lambda name, *a, **k: loads.append(name))
    common = ["--data-dir", str(tmp_path / "data")] + ([] if "--task" in args else ["--tasks", "STS-B"])
    result = runner.invoke(app, [*args, *common, "--out", str(tmp_path / "out")] if "build" not in args
                           else [*args, *common])
    assert result.exit_code == 2 and loads == []
    model = next(arg for arg in args[2:] if "no/such" in arg).removesuffix("+onnx")
    assert result.stderr.strip() == f"stseval: --model {model}: no such folder"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [
    ["whiten", "--tasks", "STS-B", "--out", "results/mine"],
    ["simcse-train", "--tasks", "STS-B", "--out", "results/mine"],
    ["index", "sweep", "--tasks", "STS-B", "--out", "results/mine"],
    ["cosent-train", "--train-on", "STS-B", "--tasks", "STS-B", "--out", "results/mine"],
    ["report", "results/whitening", "--out", "results/mine"],
])
def test_out_into_results_is_refused_in_one_line_unless_forced(args, monkeypatch):
    monkeypatch.delenv("STSEVAL_WRITE_RESULTS", raising=False)
    monkeypatch.chdir(ROOT)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and not (ROOT / "results" / "mine").exists()
    assert result.stderr.strip() == ("stseval: --out results/mine: results/ holds the committed outputs of scripts/; "
                                     "write your runs under runs/ (the default), or add --force to write there")
    forced = runner.invoke(app, [*args, "--force", "--model", "./no/such/model"] if args[0] != "report"
                           else [*args, "--force", "--plot", "bogus"])
    assert forced.exit_code == 2 and "results/ holds" not in forced.stderr  # past the guard, stopped by the next check
    assert not (ROOT / "results" / "mine").exists()



def _groups_and_commands(command=None, path=()):
    """Every command path of the app, groups included: (), ("data",), ("data", "import"), ..."""
    command = command or typer.main.get_command(app)
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _groups_and_commands(sub, (*path, name))


@pytest.mark.parametrize("path", list(_groups_and_commands()), ids=" ".join)
def test_every_command_and_group_help_renders(path):
    result = runner.invoke(app, [*path, "--help"], prog_name="stseval")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(('stseval', *path))} ")


def _declared_helps() -> dict[str, set[str]]:
    """Option name -> the help texts stseval.cli_options declares for it (one per Annotated alias)."""
    from collections import defaultdict
    from typing import Annotated, get_args, get_origin

    import stseval.cli_options as cli_options

    helps: dict[str, set[str]] = defaultdict(set)
    for alias in vars(cli_options).values():
        if get_origin(alias) is Annotated:
            info = get_args(alias)[1]
            if isinstance(info, typer.models.OptionInfo):  # in Annotated, the first option name sits in .default
                for name in (info.default, *(info.param_decls or ())):
                    if isinstance(name, str) and name.startswith("--"):
                        helps[name].add(info.help)
    return helps


def test_every_option_is_declared_once_in_cli_options_so_shared_help_cannot_drift():
    """A command's option carries one of the help texts stseval/cli_options.py declares for that name: a
    copy of --prefix or --data-dir pasted into cli.py with its own wording fails here."""
    declared = _declared_helps()
    used: set[tuple[str, str]] = set()
    for path, command in COMMANDS:
        for param in command.params:
            if not isinstance(param, typer.core.TyperOption):
                continue
            name = next(opt for opt in param.opts if opt.startswith("--"))
            assert param.help in declared.get(name, ()), f"{' '.join(path)} {name}: not from stseval.cli_options"
            used.add((name, param.help))
    unused = [(name, text) for name, texts in declared.items() for text in texts if (name, text) not in used]
    assert not unused, f"aliases no command uses: {unused}"
    # the options every command reading data or writing results shares read the same everywhere
    for name in ("--data-dir", "--force", "--bootstrap", "--index", "--checkpoint-steps", "--eval-steps"):
        assert len(declared[name]) == 1, name
