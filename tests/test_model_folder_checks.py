"""Model folders that would give silently wrong vectors or a traceback are refused by every loader.

A folder without tokenizer files (transformers then builds a tokenizer of special tokens only), a
tokenizer that maps the sentences to the unknown token, and a truncated model.safetensors: each
is a one-line error (exit 2) from `whiten`, `simcse-train`, `index build`, `index sweep`, and a
StsevalError from the Python API, before anything is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stseval
from stseval.cli import app
from stseval.common.errors import StsevalError
from stseval.encoders.encoder import TOKENIZER_FILES, encode, load_encoder
from tiny_models import SENTENCES, VOCAB, make_bert

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("stseval_home")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return make_bert(tmp_path_factory.mktemp("bert") / "tiny-bert", with_pooler=False)


@pytest.fixture
def bare_folder(tiny_bert, tmp_path) -> Path:
    """config.json and model.safetensors of the tiny BERT, no tokenizer files."""
    folder = tmp_path / "bare"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert / name, folder / name)
    return folder


@pytest.fixture
def unknown_only_folder(tiny_bert, tmp_path) -> Path:
    """The tiny BERT with a tokenizer whose vocabulary is its special tokens only: files present, every
    character unknown (what transformers builds for a folder without tokenizer files)."""
    from transformers import BertTokenizer

    folder = tmp_path / "unknown-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert / name, folder / name)
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in VOCAB[:5]), encoding="utf-8")
    BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


@pytest.fixture
def truncated_folder(tiny_bert, tmp_path) -> Path:
    """The tiny BERT with model.safetensors cut to half its bytes (an interrupted copy)."""
    folder = tmp_path / "truncated"
    shutil.copytree(tiny_bert, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return folder


def _sentences_file(tmp_path: Path) -> Path:
    """40 distinct sentences of the tiny vocabulary (about 10 tokens each), one a line."""
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"{a}{b}\n" for a in SENTENCES[:5] for b in SENTENCES), encoding="utf-8")
    return path


def _command(name: str, model: Path, data_dir: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """The command line of one loader, and the folder it would write to."""
    out = tmp_path / "out"
    common = ["--model", str(model)]
    if name == "whiten":
        return ["whiten", *common, "--tasks", "STS-B", "--dims", "full", "--fit-on", "test", "--data-dir",
                str(data_dir), "--out", str(out), "--bootstrap", "0"], out
    if name == "simcse-train":
        return ["simcse-train", *common, "--tasks", "STS-B", "--pooling", "cls", "--device", "cpu",
                "--data-dir", str(data_dir), "--out", str(out), "--runs-dir", str(tmp_path / "runs"),
                "--bootstrap", "0", "--curve-pairs", "0"], out
    if name == "index build":
        return ["index", "build", *common, "--sentences", str(_sentences_file(tmp_path)),
                "--index-dir", str(out)], out
    return ["index", "sweep", *common, "--tasks", "STS-B", "--dims", "full", "--data-dir", str(data_dir),
            "--out", str(out)], out


LOADERS = ["whiten", "simcse-train", "index build", "index sweep"]


def _one_line_error(args: list[str]) -> str:
    """Run the CLI and return its error line (the last on stderr, after any progress); exit 2, no traceback."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("stseval: --model "), result.stderr
    return line


def _written(out: Path) -> list[str]:
    """Files a refused run left in its output folder (none expected; the folder itself may exist)."""
    return sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()) if out.exists() else []


# item 1: a folder without tokenizer files

def test_folder_without_tokenizer_files_is_refused_naming_the_files_looked_for(bare_folder):
    with pytest.raises(StsevalError) as caught:
        load_encoder(str(bare_folder))
    message = str(caught.value)
    assert f"--model {bare_folder}: {bare_folder} has no tokenizer" in message
    looked_for = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model",
                  "tokenizer.model")
    assert f"(looked for {', '.join(looked_for)})" in message
    assert set(looked_for) <= set(TOKENIZER_FILES)  # the fingerprint covers every file looked for


def test_python_api_refuses_a_folder_without_tokenizer_files(bare_folder):
    with pytest.raises(StsevalError, match="has no tokenizer"):
        stseval.load_model(str(bare_folder))


@pytest.mark.parametrize("loader", LOADERS)
def test_every_command_refuses_a_folder_without_tokenizer_files(loader, bare_folder, sts_b_dir, tmp_path):
    args, out = _command(loader, bare_folder, sts_b_dir, tmp_path)
    line = _one_line_error(args)
    assert f"--model {bare_folder}" in line and "has no tokenizer (looked for tokenizer.json, vocab.txt" in line
    assert _written(out) == []


# item 1: a tokenizer that maps the sentences to the unknown token

def test_tokenizer_mapping_sentences_to_unknown_is_refused_before_encoding(unknown_only_folder, tmp_path):
    encoder = load_encoder(str(unknown_only_folder))  # files present: loading passes
    texts = _sentences_file(tmp_path).read_text(encoding="utf-8").splitlines()
    forwards = []
    encoder.model.register_forward_pre_hook(lambda *args: forwards.append(1))
    with pytest.raises(StsevalError) as caught:
        encode(encoder, texts, ["cls"], max_length=32, show_progress=False)
    message = str(caught.value)
    # every character is unknown: each of the 5 first halves comes 8 times, each of the 8 second halves 5
    n_tokens = 8 * sum(len(text) for text in SENTENCES[:5]) + 5 * sum(len(text) for text in SENTENCES)
    assert f"maps {n_tokens} of the {n_tokens} tokens of 40 sentences to the unknown token [UNK]" in message
    assert "tokenizer_config.json" in message and "vocab.txt" in message
    assert forwards == []  # refused before any forward pass, so nothing reached the cache


def test_a_sound_tokenizer_and_a_short_call_are_not_judged(tiny_bert, unknown_only_folder):
    sound = load_encoder(str(tiny_bert))
    vectors = encode(sound, list(SENTENCES) + ["今天下雨"], ["cls"], max_length=32, show_progress=False)
    assert vectors["cls"].shape == (len(SENTENCES) + 1, 32)  # 雨 and 下 are unknown, the rest known
    # fewer than UNK_CHECK_MIN_TOKENS tokens: too few to tell a broken tokenizer from rare words
    broken = load_encoder(str(unknown_only_folder))
    assert encode(broken, ["今天天气很好"], ["cls"], max_length=32, show_progress=False)["cls"].shape == (1, 32)


@pytest.mark.parametrize("loader", LOADERS)
def test_every_command_refuses_a_tokenizer_of_unknown_tokens(loader, unknown_only_folder, sts_b_dir, tmp_path):
    args, out = _command(loader, unknown_only_folder, sts_b_dir, tmp_path)
    line = _one_line_error(args)
    assert "to the unknown token [UNK]" in line and str(unknown_only_folder) in line
    assert not (out / "whiten.csv").exists() and not (out / "simcse.csv").exists()
    assert not (out / "retrieval.csv").exists() and not (out / "index.faiss").exists()


def test_python_api_evaluate_refuses_a_tokenizer_of_unknown_tokens(unknown_only_folder, sts_b_dir):
    with pytest.raises(StsevalError, match="to the unknown token"):
        stseval.evaluate(str(unknown_only_folder), "STS-B", pooling="cls", data_dir=sts_b_dir, n_resamples=0)


# item 9: a truncated model.safetensors

def test_truncated_safetensors_is_refused_naming_the_file(truncated_folder):
    weights = truncated_folder / "model.safetensors"
    with pytest.raises(StsevalError) as caught:
        load_encoder(str(truncated_folder))
    assert str(caught.value).startswith(f"--model {truncated_folder}: {weights} is not a complete safetensors file")


@pytest.mark.parametrize("loader", LOADERS)
def test_every_command_refuses_truncated_safetensors_in_one_line(loader, truncated_folder, sts_b_dir, tmp_path):
    args, out = _command(loader, truncated_folder, sts_b_dir, tmp_path)
    line = _one_line_error(args)
    assert f"{truncated_folder / 'model.safetensors'} is not a complete safetensors file" in line
    assert _written(out) == []
