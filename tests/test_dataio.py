import dataclasses
import hashlib
import shutil
import socket
import sys
import types
from pathlib import Path

import pytest

from stseval.common.errors import StsevalError
from stseval.data import importing as dataio
from stseval.data.importing import fetch_from_hub, import_folder, rows_to_senteval_lines
from stseval.data.tasks import TASKS, FileSpec, Pair, load_pairs, split_path

BROKEN = Path(__file__).parent / "fixtures" / "broken"


def copy_task_file(source_dir: Path, target_dir: Path, task: str, split: str) -> Path:
    target = split_path(TASKS[task], split, target_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(split_path(TASKS[task], split, source_dir), target)
    return target


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def import_src(tmp_path, shared_data_dir, sample_data_dir) -> Path:
    """A senteval_cn folder: one real file, two samples, and two files an import must skip."""
    src = tmp_path / "src"
    copy_task_file(shared_data_dir, src, "STS-B", "test")  # byte-identical: checksum match
    copy_task_file(sample_data_dir, src, "ATEC", "test")  # a sample: checksum differs
    copy_task_file(sample_data_dir, src, "PAWSX", "valid")
    (src / "README.md").write_text("notes\n", encoding="utf-8")
    (src / "ATEC" / "ATEC.dev.data").write_text("a\tb\t1\n", encoding="utf-8")
    return src


def test_import_reports_checksums_and_unknown_files(import_src, tmp_path):
    dest = tmp_path / "data" / "chinese-sts"
    report = import_folder(import_src, dest)
    states = {(f.task, f.split): f.checksum for f in report.files}
    assert states == {("STS-B", "test"): "match", ("ATEC", "test"): "differs", ("PAWSX", "valid"): "differs"}
    assert report.unknown_files == ("ATEC/ATEC.dev.data", "README.md")
    assert {f.relpath: f.rows for f in report.files}["ATEC/ATEC.test.data"] == 300
    copied = {k: v for k, v in folder_bytes(import_src).items() if k not in report.unknown_files}
    assert folder_bytes(dest) == copied
    assert len(load_pairs(TASKS["STS-B"], "test", dest)) == 1361
    assert "unknown file, not copied: README.md" in str(report)
    assert sorted(report) == sorted(dest / relpath for relpath in copied)  # what the CLI lists
    assert [p.name for p in dest.parent.iterdir()] == ["chinese-sts"]  # no staging left behind


def test_import_checks_train_splits_by_git_blob(import_src, tmp_path, monkeypatch):
    sts_train = FileSpec(rows=5231, sha256=None, git_blob="89acd83c846e2bb86561311a1f7776f79c116095")
    no_checksum = FileSpec(rows=62477, sha256=None, git_blob=None)
    patched = dict(TASKS)
    patched["STS-B"] = dataclasses.replace(TASKS["STS-B"], files={**TASKS["STS-B"].files, "train": sts_train})
    patched["ATEC"] = dataclasses.replace(TASKS["ATEC"], files={**TASKS["ATEC"].files, "train": no_checksum})
    monkeypatch.setattr(dataio, "TASKS", patched)
    shutil.copyfile(import_src / "STS-B" / "STS-B.test.data", import_src / "STS-B" / "STS-B.train.data")
    shutil.copyfile(import_src / "ATEC" / "ATEC.test.data", import_src / "ATEC" / "ATEC.train.data")
    report = import_folder(import_src, tmp_path / "dest")
    states = {(f.task, f.split): f.checksum for f in report.files}
    assert states["STS-B", "train"] == "differs"  # a test file is not the train file
    assert states["ATEC", "train"] == "unknown"


def test_import_rejects_a_bad_file_and_copies_nothing(import_src, tmp_path):
    bad = split_path(TASKS["LCQMC"], "valid", import_src)
    bad.parent.mkdir(parents=True)
    shutil.copyfile(BROKEN / "non_numeric_label.data", bad)
    dest = tmp_path / "dest"
    with pytest.raises(StsevalError, match=r"nothing was copied.*LCQMC\.valid\.data:2: label 'yes'"):
        import_folder(import_src, dest)
    assert not dest.exists()


def test_failed_copy_leaves_dest_as_it_was(import_src, tmp_path, shared_data_dir, monkeypatch):
    dest = tmp_path / "dest"
    copy_task_file(shared_data_dir, dest, "BQ", "test")
    before = folder_bytes(dest)
    real_copyfile, calls = shutil.copyfile, []

    def copy_then_fail(source, target, **kwargs):
        calls.append(source)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_copyfile(source, target, **kwargs)

    monkeypatch.setattr(dataio.shutil, "copyfile", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        import_folder(import_src, dest)
    assert folder_bytes(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "src"]


def test_import_merges_and_refuses_silent_replacement(import_src, tmp_path, shared_data_dir):
    dest = tmp_path / "dest"
    copy_task_file(shared_data_dir, dest, "BQ", "test")
    copy_task_file(shared_data_dir, dest, "ATEC", "test")  # the import holds a different ATEC test
    with pytest.raises(StsevalError, match="different copies of ATEC/ATEC.test.data"):
        import_folder(import_src, dest)
    report = import_folder(import_src, dest, overwrite=True)
    assert report.replaced == ("ATEC/ATEC.test.data",)
    assert len(load_pairs(TASKS["ATEC"], "test", dest)) == 300
    assert len(load_pairs(TASKS["BQ"], "test", dest)) == 10000  # kept from before


def test_import_points_at_a_nested_data_folder(import_src, tmp_path):
    with pytest.raises(StsevalError, match="no task files found.*did you mean"):
        import_folder(tmp_path, tmp_path / "dest")


def test_conversion_round_trips_through_load_pairs(tmp_path):
    rows = [
        {"sentence1": "在？可以发红包吧？", "sentence2": '免费领取"饿了么"红包', "score": 0},
        {"sentence1": '"引号开头', "sentence2": "NS", "score": 1.0},
        {"sentence1": ' 前后空格 ', "sentence2": '"x"', "score": True},
    ]
    lines = rows_to_senteval_lines(rows, TASKS["BQ"])
    assert lines[0] == '在？可以发红包吧？\t"免费领取""饿了么""红包"\t0'
    path = split_path(TASKS["BQ"], "test", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    assert load_pairs(TASKS["BQ"], "test", tmp_path) == [
        Pair(row["sentence1"], row["sentence2"], float(row["score"])) for row in rows
    ]


def test_conversion_accepts_a_datasets_split():
    datasets = pytest.importorskip("datasets")
    split = datasets.Dataset.from_list(
        [
            {"sentence1": "一个人在弹吉他", "sentence2": "一个男人在弹吉他", "score": 4},
            {"sentence1": "两只狗在跑", "sentence2": "一只猫在睡觉", "score": 0},
        ]
    )
    assert rows_to_senteval_lines(split, TASKS["STS-B"]) == [
        "一个人在弹吉他\t一个男人在弹吉他\t4",
        "两只狗在跑\t一只猫在睡觉\t0",
    ]


def test_conversion_reproduces_the_shared_files_byte_for_byte(shared_data_dir):
    for spec in TASKS.values():
        for split in spec.splits:
            rows = [dataclasses.asdict(pair) for pair in load_pairs(spec, split, shared_data_dir)]
            text = "".join(line + "\n" for line in rows_to_senteval_lines(rows, spec))
            assert hashlib.sha256(text.encode("utf-8")).hexdigest() == spec.files[split].sha256


@pytest.mark.parametrize(
    ("row", "task", "phrase"),
    [
        ({"sentence1": "a\tb", "sentence2": "c", "score": 1}, "BQ", "contains a tab or line break"),
        ({"sentence1": "a", "sentence2": "b\nc", "score": 1}, "BQ", "contains a tab or line break"),
        ({"sentence1": " ", "sentence2": "c", "score": 1}, "BQ", "sentence1 is empty"),
        ({"sentence1": None, "sentence2": "c", "score": 1}, "BQ", "not text"),
        ({"sentence1": "a", "sentence2": "c", "score": 0.5}, "BQ", "not 0 or 1"),
        ({"sentence1": "a", "sentence2": "c", "score": 6}, "STS-B", "outside 0-5"),
        ({"sentence1": "a", "sentence2": "c", "score": "high"}, "STS-B", "not a number"),
    ],
)
def test_conversion_refuses_rows_the_format_cannot_hold(row, task, phrase):
    good = {"sentence1": "a", "sentence2": "b", "score": 1}
    with pytest.raises(StsevalError, match=f"C-MTEB/X\\[test\\] row 2: .*{phrase}"):
        rows_to_senteval_lines([good, row], TASKS[task], source="C-MTEB/X[test]")


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.mark.parametrize(
    "env",
    [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],  # port 9: nothing listens
)
def test_fetch_fails_fast_when_the_hub_is_unreachable(tmp_path, monkeypatch, no_proxy_env, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    connections: list[tuple] = []
    real_connect = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: (connections.append(address),
                                                                               real_connect(address, *a, **k))[1])
    # a stand-in `datasets` records any download: failing fast means the check refuses before one starts
    downloads: list[str] = []
    fake_datasets = types.ModuleType("datasets")
    fake_datasets.load_dataset = downloads.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets)
    with pytest.raises(StsevalError, match="cannot reach the Hugging Face hub.*stseval data import DIR"):
        fetch_from_hub(tmp_path / "dest", ["BQ"], timeout_s=3)
    assert downloads == [] and len(connections) <= 1  # one probe at most (none when offline), no retries
    assert not (tmp_path / "dest").exists()


def test_fetch_converts_hub_splits_into_the_layout(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    hub = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"sentence1": "甲", "sentence2": "乙", "score": 1}]),
            "validation": datasets.Dataset.from_list([{"sentence1": '"甲"', "sentence2": "丙", "score": 0}]),
            "test": datasets.Dataset.from_list([{"sentence1": "丁", "sentence2": "戊", "score": 1}]),
        }
    )
    requested = []
    monkeypatch.setattr(dataio, "check_hub_reachable", lambda timeout_s: None)
    monkeypatch.setattr(datasets, "load_dataset", lambda name: requested.append(name) or hub)
    report = fetch_from_hub(tmp_path / "dest", "bq", timeout_s=1)
    assert requested == ["C-MTEB/BQ"]
    assert sorted(f.split for f in report.files) == ["test", "train", "valid"]
    assert all(f.checksum == "differs" for f in report.files)
    assert load_pairs(TASKS["BQ"], "valid", tmp_path / "dest") == [Pair('"甲"', "丙", 0.0)]
