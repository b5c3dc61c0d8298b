"""--model vectors:DIR: precomputed vectors read, checked, looked up exactly, and run like a model."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from stseval.cli import app
from stseval.common.errors import StsevalError
from stseval.data.tasks import TASKS, load_pairs
from stseval.encoders.cache import EmbeddingCache
from stseval.encoders.encoder import encode, load_encoder
from stseval.encoders.protocol import SentenceEncoder
from stseval.encoders.vectors import MissingSentencesError, write_vectors_dir

SENTENCES = ["今天天气很好", "今天天气不错", "花呗怎么还款", "我喜欢吃苹果"]


@pytest.fixture(autouse=True)
def stseval_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))


@pytest.fixture
def vectors_dir(tmp_path, rng):
    folder = tmp_path / "api-vectors"
    write_vectors_dir(folder, "my-api-model", SENTENCES, rng.normal(size=(4, 6)))
    return folder


def test_vectors_come_back_exactly_in_input_order(vectors_dir):
    encoder = load_encoder(f"vectors:{vectors_dir}")
    assert isinstance(encoder, SentenceEncoder)
    assert (encoder.name, encoder.dimension) == ("my-api-model", 6)
    assert [p for p in ("cls", "last-avg", "sentence") if encoder.supports(p)] == ["sentence"]
    stored = np.load(vectors_dir / "vectors.npy")
    got = encode(encoder, [SENTENCES[2], SENTENCES[0], SENTENCES[2]], "sentence", max_length=64,
                 show_progress=False)["sentence"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, stored[[2, 0, 2]])


def test_parquet_files_and_several_parts_are_read(tmp_path, rng):
    pytest.importorskip("pyarrow")
    folder = tmp_path / "parts"
    write_vectors_dir(folder, "m", SENTENCES[:2], rng.normal(size=(2, 3)))
    more = rng.normal(size=(3, 3)).astype(np.float32)
    more[0] = np.load(folder / "vectors.npy")[1]  # the sentence both parts hold has the same vector in both
    pd.DataFrame({"sentence": SENTENCES[1:], "vector": list(more)}).to_parquet(folder / "more.parquet")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"].append({"parquet": "more.parquet"})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    got = encode(load_encoder(f"vectors:{folder}"), SENTENCES, "sentence", max_length=64, show_progress=False)
    np.testing.assert_array_equal(got["sentence"][3], more[2])


def test_sentences_are_looked_up_with_the_prefix_in_front(tmp_path, rng):
    folder = tmp_path / "prefixed"
    write_vectors_dir(folder, "e5-api", [f"query: {text}" for text in SENTENCES], rng.normal(size=(4, 5)))
    encoder = load_encoder(f"vectors:{folder}")
    assert encode(encoder, SENTENCES, "sentence", max_length=64, prefix="query: ",
                  show_progress=False)["sentence"].shape == (4, 5)
    with pytest.raises(MissingSentencesError, match=r"4 of 4 sentences have no vector there .*with any --prefix"):
        encode(encoder, SENTENCES, "sentence", max_length=64, show_progress=False)


def test_missing_sentences_say_how_many_and_show_the_first(vectors_dir):
    encoder = load_encoder(f"vectors:{vectors_dir}")
    asked = SENTENCES + ["没有这句", "也没有这句", "还有一句", "第四句"]
    with pytest.raises(MissingSentencesError) as caught:
        encode(encoder, asked, "sentence", max_length=64, show_progress=False)
    message = str(caught.value)
    assert "4 of 8 sentences have no vector" in message
    assert "'没有这句', '也没有这句', '还有一句'" in message and "第四句" not in message  # the first three


def test_cache_and_fingerprint_follow_the_files(vectors_dir, tmp_path, rng):
    cache = EmbeddingCache(tmp_path / "cache")
    first = load_encoder(f"vectors:{vectors_dir}")
    encode(first, SENTENCES, "sentence", max_length=64, cache=cache, show_progress=False)
    write_vectors_dir(vectors_dir, "my-api-model", SENTENCES, rng.normal(size=(4, 6)))  # new vectors, same name
    second = load_encoder(f"vectors:{vectors_dir}")
    assert second.fingerprint != first.fingerprint
    got = encode(second, SENTENCES, "sentence", max_length=64, cache=cache, show_progress=False)["sentence"]
    np.testing.assert_array_equal(got, np.load(vectors_dir / "vectors.npy"))  # not the cached old ones


def _break(folder, how):
    """Damage a vectors folder in one way."""
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if how == "no manifest":
        manifest_path.unlink()
    elif how == "dimension":
        manifest["dimension"] = 7
    elif how == "no name":
        manifest.pop("name")
    elif how == "entry":
        manifest["files"] = [{"vectors": "vectors.npy"}]
    elif how == "listed file missing":
        manifest["files"][0]["sentences"] = "nope.txt"
    elif how == "count":
        (folder / "sentences.txt").write_text("".join(f"{s}\n" for s in SENTENCES[:3]), encoding="utf-8")
    elif how == "empty line":
        (folder / "sentences.txt").write_text("a\n\nb\nc\n", encoding="utf-8")
    elif how == "not finite":
        vectors = np.load(folder / "vectors.npy")
        vectors[2, 1] = np.nan
        np.save(folder / "vectors.npy", vectors)
    elif how == "beyond float32":  # finite as float64, inf as float32
        vectors = np.load(folder / "vectors.npy").astype(np.float64)
        vectors[1, 3] = 1e300
        np.save(folder / "vectors.npy", vectors)
    elif how == "parent path":
        (folder.parent / "elsewhere.txt").write_text((folder / "sentences.txt").read_text(encoding="utf-8"),
                                                     encoding="utf-8")
        manifest["files"][0]["sentences"] = "../elsewhere.txt"
    elif how == "absolute path":
        (folder.parent / "elsewhere.npy").write_bytes((folder / "vectors.npy").read_bytes())
        manifest["files"][0]["vectors"] = str(folder.parent / "elsewhere.npy")
    elif how == "link out":
        (folder.parent / "elsewhere.npy").write_bytes((folder / "vectors.npy").read_bytes())
        (folder / "linked.npy").symlink_to(folder.parent / "elsewhere.npy")
        manifest["files"][0]["vectors"] = "linked.npy"
    elif how == "two vectors":
        repeated = [*SENTENCES[:3], SENTENCES[0]]
        (folder / "sentences.txt").write_text("".join(f"{s}\n" for s in repeated), encoding="utf-8")
    if manifest_path.exists():
        manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("how, message", [
    ("no manifest", r"no manifest.json in the folder"),
    ("dimension", r"vectors.npy holds vectors of shape \(4, 6\); .*manifest.json says dimension 7"),
    ("no name", r"'name' must be a non-empty string"),
    ("entry", r"files\[0\] must be"),
    ("listed file missing", r"lists nope.txt, which is not a file"),
    ("count", r"has 4 vectors for 3 sentences"),
    ("empty line", r"sentences.txt:2: empty line"),
    ("not finite", r"vectors.npy row 2 \('花呗怎么还款'\) is not finite"),
    ("two vectors", r"'今天天气很好' has two different vectors: .*vectors.npy row 3 and .*vectors.npy row 0"),
    ("beyond float32", r"vectors.npy row 1 \('今天天气不错'\) holds values beyond float32's range \(\+-3.4e\+38\)"),
    ("parent path", r"manifest.json lists \.\./elsewhere.txt, which lies outside"),
    ("absolute path", r"manifest.json lists /.*/elsewhere.npy, which lies outside"),
    ("link out", r"manifest.json lists linked.npy, which lies outside"),
])
def test_bad_folders_are_refused_naming_the_file(vectors_dir, how, message):
    _break(vectors_dir, how)
    with pytest.raises(StsevalError, match=rf"--model vectors:{vectors_dir}: .*{message}"):
        load_encoder(f"vectors:{vectors_dir}")


def test_vectors_beyond_float32_range_are_a_one_line_error_not_a_linalg_traceback(tmp_path, rng):
    data_dir = tmp_path / "data"
    (data_dir / "STS-B").mkdir(parents=True)
    pairs = [(first, second, str(row % 6)) for row, (first, second) in
             enumerate((a, b) for a in SENTENCES for b in SENTENCES if a != b)]  # 12 pairs, scores 0-5
    (data_dir / "STS-B" / "STS-B.test.data").write_text("".join("\t".join(pair) + "\n" for pair in pairs),
                                                        encoding="utf-8")
    vectors = rng.normal(size=(len(SENTENCES), 6))
    vectors[2, 0] = 1e300  # float64 is fine with it; as float32 it is inf, and whitening's SVD failed
    folder = tmp_path / "huge"
    write_vectors_dir(folder, "huge", SENTENCES, np.zeros_like(vectors))
    np.save(folder / "vectors.npy", vectors)
    result = CliRunner().invoke(app, ["whiten", "--model", f"vectors:{folder}", "--pooling", "sentence", "--dims",
                                      "full", "--tasks", "STS-B", "--fit-on", "test", "--data-dir", str(data_dir),
                                      "--bootstrap", "0", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"stseval: --model vectors:{folder}: {folder / 'vectors.npy'} row 2 ('花呗怎么还款') holds values beyond "
        "float32's range (+-3.4e+38); vectors are used as float32")
    assert not (tmp_path / "out" / "whiten.csv").exists()


def test_no_folder_and_pytorch_options_are_refused(tmp_path, vectors_dir):
    with pytest.raises(StsevalError, match="no such folder"):
        load_encoder(f"vectors:{tmp_path / 'absent'}")
    with pytest.raises(StsevalError, match="give the folder after 'vectors:'"):
        load_encoder("vectors:")
    with pytest.raises(StsevalError, match="--backend onnx"):
        load_encoder(f"vectors:{vectors_dir}", backend="onnx")


def test_whiten_scores_precomputed_vectors_and_names_the_task_of_missing_ones(tmp_path, sample_data_dir, rng):
    pairs = load_pairs(TASKS["STS-B"], "test", sample_data_dir)
    sentences = list(dict.fromkeys(text for pair in pairs for text in (pair.sentence1, pair.sentence2)))
    folder = tmp_path / "stsb-vectors"
    write_vectors_dir(folder, "random-16", sentences, rng.normal(size=(len(sentences), 16)))
    args = ["whiten", "--model", f"vectors:{folder}", "--pooling", "sentence,cls", "--dims", "full,4",
            "--tasks", "STS-B", "--fit-on", "test", "--data-dir", str(sample_data_dir), "--bootstrap", "0"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "ok" / "whiten.csv", keep_default_na=False)
    assert set(rows.model) == {"random-16"}
    assert set(rows[rows.pooling == "cls"].status) == {"n/a"}
    scored = rows[rows.pooling == "sentence"]
    assert set(scored.status) == {"ok"} and len(scored) == 3 and (scored.n_pairs.astype(int) == len(pairs)).all()

    write_vectors_dir(folder, "random-16", sentences[2:], rng.normal(size=(len(sentences) - 2, 16)))
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "missing")])
    assert result.exit_code == 2
    last_line = result.output.strip().splitlines()[-1]
    assert f"STS-B test: --model vectors:{folder}: 2 of {len(sentences)} sentences have no vector there" in last_line
    assert repr(sentences[0]) in last_line
