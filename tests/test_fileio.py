import hashlib

import pytest

from stseval.fileio import atomic_path, file_sha256, write_bytes_atomic, write_text_atomic


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
    data = "花呗怎么还款\n".encode("utf-8")
    digest = write_bytes_atomic(data, tmp_path / "sub" / "f.txt")
    assert digest == hashlib.sha256(data).hexdigest() == file_sha256(tmp_path / "sub" / "f.txt")
