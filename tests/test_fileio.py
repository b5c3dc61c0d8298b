import hashlib
import os

import pytest

from stseval.common.fileio import atomic_path, file_sha256, write_bytes_atomic, write_text_atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "grid.csv"
    write_text_atomic("old\n", target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.csv"]


def test_write_bytes_returns_sha256_and_file_sha256_agrees(tmp_path):
    data = "花呗怎么还款\n".encode()
    digest = write_bytes_atomic(data, tmp_path / "sub" / "f.txt")
    assert digest == hashlib.sha256(data).hexdigest() == file_sha256(tmp_path / "sub" / "f.txt")


def test_cleanup_failure_never_hides_the_error_of_the_block(tmp_path, monkeypatch):
    from pathlib import Path

    def unlink_fails(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", unlink_fails)
    with pytest.raises(RuntimeError, match="the real problem"):
        with atomic_path(tmp_path / "grid.csv"):
            raise RuntimeError("the real problem")


def test_writable_check_changes_nothing_and_names_the_option(tmp_path):
    from stseval.common.errors import StsevalError
    from stseval.common.fileio import check_writable_dir

    check_writable_dir(tmp_path / "new" / "deeper", "--out")  # missing, under a writable folder: fine
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StsevalError, match=r"^--out .*a-file: is a file, not a folder"):
        check_writable_dir(tmp_path / "a-file", "--out")
    with pytest.raises(StsevalError, match=r"^--index-dir .*sub: is under .*a-file, which is a file"):
        check_writable_dir(tmp_path / "a-file" / "sub", "--index-dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    from stseval.common.errors import StsevalError
    from stseval.common.fileio import check_writable_dir

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(StsevalError, match=r"^--out .*locked/out: cannot write into .*locked"):
        check_writable_dir(locked / "out", "--out")


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


def _one_line_exit_2(args, option, monkeypatch):
    """Run the CLI; it must fail with exit 2 and one stseval line naming the option, encoding nothing."""
    from typer.testing import CliRunner

    import stseval.encoders.encoder as encoders
    from stseval.cli import app

    monkeypatch.setattr(encoders, "load_encoder", lambda *a, **k: pytest.fail("loaded a model before checking"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"stseval: {option} "), result.output


def test_whiten_into_an_unwritable_out_fails_up_front(a_file, shared_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    common = ["whiten", "--model", "m", "--tasks", "STS-B", "--data-dir", str(shared_data_dir)]
    _one_line_exit_2([*common, "--out", str(a_file)], "--out", monkeypatch)
    _one_line_exit_2([*common, "--out", str(a_file / "sub")], "--out", monkeypatch)
    _one_line_exit_2([*common, "--out", str(tmp_path / "o"), "--save-kernel", str(a_file)], "--save-kernel",
                     monkeypatch)
    monkeypatch.setenv("STSEVAL_HOME", str(a_file))
    _one_line_exit_2([*common, "--out", str(tmp_path / "o")], "STSEVAL_HOME", monkeypatch)


def test_report_index_and_data_commands_check_their_folders_up_front(a_file, tmp_path, monkeypatch):
    from stseval.runs.results import ResultRow, rows_to_frame, write_frame

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    results = tmp_path / "r.csv"
    write_frame(rows_to_frame([ResultRow(model="m", pooling="cls", method="raw", task="STS-B", split="test",
                                         metric="spearman_cosine", value=0.5)]), results)
    _one_line_exit_2(["report", str(results), "--out", str(a_file)], "--out", monkeypatch)
    sentences = tmp_path / "s.txt"
    sentences.write_text("今天天气很好\n借钱\n")
    _one_line_exit_2(["index", "build", "--sentences", str(sentences), "--index-dir", str(a_file / "idx")],
                     "--index-dir", monkeypatch)
    _one_line_exit_2(["index", "sweep", "--out", str(a_file)], "--out", monkeypatch)
    source = tmp_path / "src"
    source.mkdir()
    _one_line_exit_2(["data", "import", str(source), "--dest", str(a_file / "data")], "--dest", monkeypatch)
    _one_line_exit_2(["data", "fetch", "--dest", str(a_file / "data")], "--dest", monkeypatch)


def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from pathlib import Path

    from stseval.common.errors import StsevalError

    target = tmp_path / "whiten.csv"
    write_text_atomic("old\n", target)
    monkeypatch.setattr(Path, "write_bytes", _disk_full)
    with pytest.raises(StsevalError) as caught:
        write_text_atomic("new\n", target)
    message = str(caught.value)
    assert message.startswith(f"{target}: cannot write it (no space left on the device); ")
    assert "as they were" in message and "\n" not in message
    assert isinstance(caught.value, OSError) and caught.value.errno == 28  # optional writes may still pass over it
    monkeypatch.undo()
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["whiten.csv"]
    monkeypatch.setattr(Path, "mkdir", _disk_full)  # a new folder needs a block as well
    with pytest.raises(StsevalError, match=r"new.md: cannot write it \(no space left on the device\)"):
        write_text_atomic("x", tmp_path / "sub" / "new.md")
    monkeypatch.undo()
    with pytest.raises(StsevalError, match=r"grid\.png: cannot write it \(Read-only file system\)"):
        with atomic_path(tmp_path / "grid.png"):
            raise OSError(30, "Read-only file system")


def test_writable_check_sees_a_disk_that_is_already_full(tmp_path, monkeypatch):
    import tempfile

    from stseval.common.errors import StsevalError
    from stseval.common.fileio import check_writable_dir

    real = tempfile.NamedTemporaryFile

    def full(*args, **kwargs):  # creating an empty file needs no space; its first byte does
        handle = real(*args, **kwargs)
        handle.write = _disk_full
        return handle

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full)
    with pytest.raises(StsevalError, match=r"^--out .*: cannot write into .* \(No space left on device\)"):
        check_writable_dir(tmp_path / "out", "--out")
