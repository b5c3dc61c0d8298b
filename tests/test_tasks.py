import csv
import os
import shutil
from pathlib import Path

import pytest

from stseval.common.errors import StsevalError
from stseval.data import tasks
from stseval.data.status import format_task_status, task_status
from stseval.data.tasks import (
    TASKS,
    Pair,
    data_fingerprint,
    file_sha256,
    load_pairs,
    parse_task_names,
    read_pairs,
    resolve_data_dir,
    split_path,
    task_by_name,
)

BROKEN = Path(__file__).parent / "fixtures" / "broken"

# Fields written in the source's CSV-quoted form ("a""b"), counted over both sentence columns.
QUOTED_FIELDS = {
    ("ATEC", "test"): 1,
    ("BQ", "train"): 109,
    ("BQ", "test"): 1,
    ("PAWSX", "valid"): 5,
    ("PAWSX", "test"): 10,
}


def write_task_file(data_dir: Path, task: str, split: str, text: str | bytes) -> Path:
    path = split_path(TASKS[task], split, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_manifest_declares_the_five_tasks_in_order():
    assert list(TASKS) == ["ATEC", "BQ", "LCQMC", "PAWSX", "STS-B"]
    assert TASKS["STS-B"].label_kind == "graded" and TASKS["STS-B"].score_range == (0.0, 5.0)
    assert all(TASKS[name].score_range == (0.0, 1.0) for name in ("ATEC", "BQ", "LCQMC", "PAWSX"))
    assert TASKS["PAWSX"].max_length == 128 and TASKS["ATEC"].max_length == 64
    assert TASKS["STS-B"].hub_dataset == "C-MTEB/STSB"
    assert TASKS["BQ"].splits == ("train", "valid", "test")
    assert TASKS["ATEC"].splits == ("valid", "test")
    assert TASKS["LCQMC"].files["train"].sha256 is None  # missing split, listed for `stseval tasks`


def test_every_shared_file_loads_with_manifest_rows_and_checksum(shared_data_dir):
    checked = 0
    for spec in TASKS.values():
        for split in spec.splits:
            pairs = load_pairs(spec, split, shared_data_dir)
            expected = spec.files[split]
            assert len(pairs) == expected.rows, (spec.name, split)
            assert file_sha256(split_path(spec, split, shared_data_dir)) == expected.sha256
            low, high = spec.score_range
            assert all(low <= pair.score <= high for pair in pairs)
            checked += 1
    assert checked == 12


def test_quoted_fields_are_unquoted_as_a_csv_reader_would(shared_data_dir):
    # The strict csv dialect is the source's intent; our reader must agree on every real line.
    for spec in TASKS.values():
        for split in spec.splits:
            path = split_path(spec, split, shared_data_dir)
            lines = path.read_text(encoding="utf-8").split("\n")[:-1]
            raw = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
            dialect = list(csv.reader(lines, delimiter="\t", strict=True))
            pairs = load_pairs(spec, split, shared_data_dir)
            assert [[p.sentence1, p.sentence2] for p in pairs] == [row[:2] for row in dialect]
            unquoted = sum(
                (p.sentence1 != r[0]) + (p.sentence2 != r[1]) for p, r in zip(pairs, raw, strict=True)
            )
            assert unquoted == QUOTED_FIELDS.get((spec.name, split), 0), (spec.name, split)


def test_bq_test_line_4284_is_unquoted(shared_data_dir):
    pair = load_pairs(TASKS["BQ"], "test", shared_data_dir)[4283]
    assert pair == Pair("在？可以发红包吧？", '免费领取"饿了么"红包', 0.0)


def test_pawsx_ns_placeholder_stays_text(shared_data_dir):
    for split, n_lines in (("test", 25), ("valid", 16)):
        pairs = load_pairs(TASKS["PAWSX"], split, shared_data_dir)
        assert sum("NS" in (p.sentence1, p.sentence2) for p in pairs) == n_lines
    pairs = load_pairs(TASKS["PAWSX"], "test", shared_data_dir)
    assert pairs[67].sentence1.startswith('Pure 的意思是简单地，而 "Belter" 或 "Belta"')


def test_sample_data_dir_holds_real_pairs(sample_data_dir):
    for spec in TASKS.values():
        for split in spec.splits:
            assert len(load_pairs(spec, split, sample_data_dir)) == 300


def test_quoting_rule_only_unquotes_the_csv_form(tmp_path):
    lines = [
        '"a""b"\tplain\t1',  # quoted form -> a"b
        '"""x"""\t"NS"\t0',  # -> "x" and NS
        'a"b\t"abc\t1',  # stray quotes stay
        '"a"b"\t"x\t0',  # inner quote not doubled: literal
        "NS\tnan\t1",  # text that pandas would turn into NaN
    ]
    write_task_file(tmp_path, "BQ", "test", "\n".join(lines) + "\n")
    pairs = load_pairs(TASKS["BQ"], "test", tmp_path)
    assert [(p.sentence1, p.sentence2) for p in pairs] == [
        ('a"b', "plain"),
        ('"x"', "NS"),
        ('a"b', '"abc'),
        ('"a"b"', '"x'),
        ("NS", "nan"),
    ]


def test_crlf_line_endings_and_bom_are_accepted(tmp_path):
    write_task_file(tmp_path, "STS-B", "test", "\ufeff一个人\t两个人\t3\r\n猫\t狗\t0\r\n")
    pairs = load_pairs(TASKS["STS-B"], "test", tmp_path)
    assert pairs == [Pair("一个人", "两个人", 3.0), Pair("猫", "狗", 0.0)]


def test_graded_labels_and_whitespace_are_kept(tmp_path):
    write_task_file(tmp_path, "STS-B", "test", " 一个人 \t两个人\t2.5\n")
    assert load_pairs(TASKS["STS-B"], "test", tmp_path) == [Pair(" 一个人 ", "两个人", 2.5)]


@pytest.mark.parametrize(
    ("fixture", "task", "line", "phrase"),
    [
        ("wrong_field_count.data", "ATEC", 2, "expected 3 tab-separated fields"),
        ("blank_line.data", "ATEC", 2, "an empty line"),
        ("empty_sentence.data", "ATEC", 3, "sentence2 is empty"),
        ("quoted_empty_sentence.data", "ATEC", 1, "sentence1 is empty"),
        ("non_numeric_label.data", "ATEC", 2, "is not a number"),
        ("out_of_range_label.data", "ATEC", 4, "is not 0 or 1"),
        ("non_integer_label.data", "ATEC", 2, "is not 0 or 1"),
        ("graded_out_of_range.data", "STS-B", 2, "outside the score range 0-5"),
        ("bad_utf8.data", "ATEC", 3, "not valid UTF-8"),
        ("carriage_return.data", "ATEC", 2, "carriage return"),
        ("empty.data", "ATEC", 1, "file is empty"),
    ],
)
def test_malformed_file_names_file_and_line(tmp_path, fixture, task, line, phrase):
    path = write_task_file(tmp_path, task, "test", (BROKEN / fixture).read_bytes())
    with pytest.raises(StsevalError) as err:
        load_pairs(TASKS[task], "test", tmp_path)
    assert f"{path}:{line}:" in str(err.value)
    assert phrase in str(err.value)


def test_missing_split_file_says_how_to_fix(tmp_path):
    write_task_file(tmp_path, "ATEC", "test", "a\tb\t1\n")
    with pytest.raises(StsevalError, match="no ATEC train split.*stseval data import"):
        load_pairs(TASKS["ATEC"], "train", tmp_path)
    with pytest.raises(StsevalError, match="ATEC.valid.data: file not found"):
        load_pairs(TASKS["ATEC"], "valid", tmp_path)
    with pytest.raises(StsevalError, match="no split 'dev'"):
        load_pairs(TASKS["ATEC"], "dev", tmp_path)


def test_cache_returns_fresh_lists_and_sees_rewrites(tmp_path):
    path = write_task_file(tmp_path, "BQ", "test", "a\tb\t1\n")
    first = load_pairs(TASKS["BQ"], "test", tmp_path)
    first.append(Pair("x", "y", 0.0))
    assert load_pairs(TASKS["BQ"], "test", tmp_path) == [Pair("a", "b", 1.0)]
    replacement = tmp_path / "new.data"
    replacement.write_text("c\td\t0\n", encoding="utf-8")
    os.replace(replacement, path)
    assert load_pairs(TASKS["BQ"], "test", tmp_path) == [Pair("c", "d", 0.0)]


def test_read_pairs_reads_any_path():
    with pytest.raises(StsevalError, match="empty_sentence.data:3:"):
        read_pairs(BROKEN / "empty_sentence.data", TASKS["LCQMC"])


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("ATEC,BQ", ["ATEC", "BQ"]),
        (["pawsx", "stsb"], ["PAWSX", "STS-B"]),
        (["STS-B, ATEC", "atec"], ["STS-B", "ATEC"]),
        ("all", list(TASKS)),
    ],
)
def test_parse_task_names(option, expected):
    assert [spec.name for spec in parse_task_names(option)] == expected


@pytest.mark.parametrize("option", ["", [], None, " , ", "ATEC,FOO"])
def test_parse_task_names_rejects_unknown_or_empty(option):
    with pytest.raises(StsevalError, match="--tasks"):
        parse_task_names(option)


@pytest.fixture
def isolated_places(tmp_path, monkeypatch):
    """A fake project root and cwd, with STSEVAL_DATA_DIR unset."""
    project = tmp_path / "proj"
    project.mkdir()
    monkeypatch.setattr(tasks, "PROJECT_ROOT", project)
    monkeypatch.delenv("STSEVAL_DATA_DIR", raising=False)
    monkeypatch.chdir(project)
    return tmp_path


def test_resolve_data_dir_search_order(isolated_places, monkeypatch):
    root = isolated_places
    shared = root / "shared" / "data" / "chinese-sts"
    local = root / "proj" / "data" / "chinese-sts"
    from_env, from_option = root / "env-data", root / "option-data"
    for folder in (shared, local, from_env, from_option):
        write_task_file(folder, "ATEC", "test", "a\tb\t1\n")

    monkeypatch.setenv("STSEVAL_DATA_DIR", str(from_env))
    assert resolve_data_dir(from_option) == from_option.resolve()
    assert resolve_data_dir(None) == from_env.resolve()
    monkeypatch.delenv("STSEVAL_DATA_DIR")
    assert resolve_data_dir(None) == local.resolve()
    shutil.rmtree(local)
    assert resolve_data_dir(None) == shared.resolve()


def test_resolve_data_dir_finds_shared_next_to_cwd(isolated_places, monkeypatch):
    elsewhere = isolated_places / "elsewhere"
    write_task_file(elsewhere / "shared" / "data" / "chinese-sts", "BQ", "test", "a\tb\t1\n")
    (elsewhere / "work").mkdir()
    monkeypatch.chdir(elsewhere / "work")
    assert resolve_data_dir(None) == (elsewhere / "shared" / "data" / "chinese-sts").resolve()


def test_resolve_data_dir_error_lists_every_place(isolated_places):
    with pytest.raises(StsevalError) as err:
        resolve_data_dir(None)
    message = str(err.value)
    assert "--data-dir (not given)" in message and "$STSEVAL_DATA_DIR (not set)" in message
    assert str(isolated_places / "proj" / "data" / "chinese-sts") in message
    assert str(isolated_places / "shared" / "data" / "chinese-sts") in message
    assert "{task}/{task}.{split}.data" in message and "ATEC/ATEC.test.data" in message
    assert "\n" not in message  # the CLI prints it as one line


def test_explicit_data_dir_never_falls_back(isolated_places, monkeypatch):
    write_task_file(isolated_places / "proj" / "data" / "chinese-sts", "ATEC", "test", "a\tb\t1\n")
    empty = isolated_places / "empty"
    empty.mkdir()
    with pytest.raises(StsevalError, match=r"^--data-dir .*missing: does not exist"):
        resolve_data_dir(isolated_places / "missing")
    monkeypatch.setenv("STSEVAL_DATA_DIR", str(empty))
    with pytest.raises(StsevalError, match=r"^STSEVAL_DATA_DIR .*empty: holds no task files"):
        resolve_data_dir(None)


def test_task_status_lists_missing_and_checksums(shared_data_dir, sample_data_dir):
    status = {(row.task, row.split): row for row in task_status(shared_data_dir)}
    assert len(status) == 15
    assert not status["ATEC", "train"].found and status["ATEC", "train"].rows is None
    assert status["BQ", "train"].rows == 100000 and status["BQ", "train"].sha256_ok
    assert all(row.sha256_ok for row in status.values() if row.found)
    sampled = {(row.task, row.split): row for row in task_status(sample_data_dir)}
    assert sampled["STS-B", "test"].rows == 300 and sampled["STS-B", "test"].sha256_ok is False
    table = format_task_status(task_status(sample_data_dir), sample_data_dir).splitlines()
    assert len(table) == 2 + 15
    assert table[2].split() == ["ATEC", "train", "binary", "0/1", "-", "62477", "missing", "-"]
    assert "sha256 DIFFERS" in table[-1] and "graded 0-5" in table[-1]


def test_data_fingerprint_tracks_file_bytes(tmp_path):
    write_task_file(tmp_path, "BQ", "test", "a\tb\t1\n")
    write_task_file(tmp_path, "BQ", "valid", "c\td\t0\n")
    fingerprint = data_fingerprint(TASKS["BQ"], ["test", "valid"], tmp_path)
    assert len(fingerprint) == 12
    assert data_fingerprint(TASKS["BQ"], ["valid", "test"], tmp_path) == fingerprint
    assert data_fingerprint(TASKS["BQ"], ["test"], tmp_path) != fingerprint
    write_task_file(tmp_path, "BQ", "valid", "c\td\t1\n")
    assert data_fingerprint(TASKS["BQ"], ["test", "valid"], tmp_path) != fingerprint
    with pytest.raises(StsevalError, match="BQ.train.data: file not found"):
        data_fingerprint(TASKS["BQ"], ["train"], tmp_path)


def test_read_sentence_lines_names_option_and_file(tmp_path):
    from stseval.data.tasks import read_sentence_lines

    good = tmp_path / "s.txt"
    good.write_text(" 花呗怎么还款 \n\n借钱\n借钱\n", encoding="utf-8")
    assert read_sentence_lines(good, "--fit-on") == ["花呗怎么还款", "借钱", "借钱"]
    with pytest.raises(StsevalError, match=r"--fit-on .*s.txt: 3 sentence\(s\); need at least 4"):
        read_sentence_lines(good, "--fit-on", min_sentences=4)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe broken")
    with pytest.raises(StsevalError, match=r"--train-on .*bad.txt: cannot read it as UTF-8"):
        read_sentence_lines(bad, "--train-on")
    with pytest.raises(StsevalError, match=r"--sentences .*missing.txt: file not found"):
        read_sentence_lines(tmp_path / "missing.txt", "--sentences")


def test_tasks_parses_files_whose_checksum_differs_and_shows_the_first_error(tmp_path):
    from typer.testing import CliRunner

    from stseval.cli import app

    write_task_file(tmp_path, "ATEC", "test", "a\tb\t1\nc\td\t0\n")  # a user's own, valid copy
    broken = write_task_file(tmp_path, "ATEC", "valid", (BROKEN / "non_numeric_label.data").read_bytes())
    result = CliRunner().invoke(app, ["tasks", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    table = result.stdout.splitlines()
    valid_line = table.index(next(line for line in table if line.startswith("ATEC   valid")))
    assert table[valid_line].endswith("sha256 DIFFERS, does not parse")
    error_line = table[valid_line + 1]
    assert error_line.strip().startswith(f"error: {broken}:2:") and "is not a number" in error_line
    assert next(line for line in table if line.startswith("ATEC   test")).endswith("sha256 DIFFERS, parses")
    assert result.stderr.startswith(f"stseval: 1 file(s) do not parse; the first: {broken}:2:")


def test_tasks_validate_parses_files_whose_checksum_matches(shared_data_dir):
    plain = {(row.task, row.split): row for row in task_status(shared_data_dir)}
    assert all(row.parsed is None for row in plain.values())  # published files: checksum is enough
    checked = {(row.task, row.split): row for row in task_status(shared_data_dir, validate=True)}
    found = [row for row in checked.values() if row.found]
    assert found and all(row.parsed is True and row.problem == "" for row in found)
    table = format_task_status(list(checked.values()), shared_data_dir)
    assert table.count("sha256 ok, parses") == len(found)


@pytest.mark.parametrize("alias, name", [("STSB", "STS-B"), ("sts-b", "STS-B"), ("STS_B", "STS-B"),
                                          ("lcqmc", "LCQMC"), ("PAWS-X", "PAWSX"), ("atec", "ATEC")])
def test_task_name_aliases_resolve_to_the_registry_name(alias, name):
    assert task_by_name(alias).name == name
    assert [spec.name for spec in parse_task_names(alias)] == [name]


def test_unknown_task_name_names_the_option_and_the_closest_task():
    with pytest.raises(StsevalError, match=r"^--task: unknown task 'PWASX'; did you mean PAWSX\?"):
        parse_task_names("PWASX", "--task")
    with pytest.raises(StsevalError, match=r"unknown task 'xyz'; choose from ATEC"):
        task_by_name("xyz")


def test_tasks_flags_a_split_whose_labels_are_all_one_value(tmp_path):
    """issue 29, item 2: Spearman against one label is undefined, so `tasks --validate` says so and exits 2."""
    from typer.testing import CliRunner

    from stseval.cli import app

    write_task_file(tmp_path, "STS-B", "valid", "a\tb\t1\nc\td\t4.5\n")
    constant = write_task_file(tmp_path, "STS-B", "test", "a\tb\t3\nc\td\t3.0\ne\tf\t3\n")
    status = {(row.task, row.split): row for row in task_status(tmp_path, validate=True)}
    assert status["STS-B", "test"].constant_label == 3.0 and status["STS-B", "valid"].constant_label is None
    result = CliRunner().invoke(app, ["tasks", "--data-dir", str(tmp_path), "--validate"])
    assert result.exit_code == 2
    table = result.stdout.splitlines()
    test_line = table.index(next(line for line in table if line.startswith("STS-B  test")))
    assert table[test_line].endswith("parses, labels all 3")
    assert table[test_line + 1].strip() == (f"error: {constant}: every pair has label 3, so Spearman is undefined "
                                            "on this split (each score would be written as `undefined`); "
                                            "is it the right file?")
    assert next(line for line in table if line.startswith("STS-B  valid")).endswith("parses")
    assert result.stderr.strip() == (f"stseval: 1 split(s) have one label for every pair; the first: {constant}: "
                                     "every pair has label 3, so Spearman is undefined on this split (each score "
                                     "would be written as `undefined`); is it the right file?")
