"""stseval.runs.specs: options parsed once into frozen specs, with the messages of the command's own options."""

import dataclasses
from pathlib import Path

import pytest

from stseval.common.errors import StsevalError
from stseval.common.settings import Dropout, Pooling
from stseval.data.tasks import TASKS
from stseval.runs.specs import (
    FitSource,
    available_splits,
    parse_fit_on,
    parse_simcse_run,
    parse_sweep_run,
    parse_train_on,
    parse_whiten_run,
)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """BQ with train, valid and test; ATEC with valid and test only (as in the shared data)."""
    for task, splits in (("BQ", ("train", "valid", "test")), ("ATEC", ("valid", "test"))):
        (tmp_path / task).mkdir()
        for split in splits:
            (tmp_path / task / f"{task}.{split}.data").write_text("一\t二\t1\n", encoding="utf-8")
    return tmp_path


def test_fit_sources_parse_once_and_name_themselves_as_rows_do(tmp_path):
    sentences = tmp_path / "wiki.txt"
    sentences.write_text("a\nb\n", encoding="utf-8")
    cases = {"test": ("split", "test", "test"), "all-available": ("all-available", "", "all-available"),
             "pooled": ("pooled", "", "pooled"), "task:paws-x": ("task", "PAWSX", "task:PAWSX"),
             str(sentences): ("file", str(sentences), "file:wiki.txt")}
    for text, (kind, value, label) in cases.items():
        source = FitSource.parse(text)
        assert (source.kind, source.value, source.label) == (kind, value, label)
    with pytest.raises(dataclasses.FrozenInstanceError):
        FitSource.parse("test").kind = "pooled"


@pytest.mark.parametrize("text, message", [
    ("nofile.txt", "^--fit-on: file not found: nofile.txt$"),
    ("no/such/sentences", "^--fit-on: file not found: no/such/sentences$"),
    ("tset", r"^--fit-on: 'tset' is not one of all-available, train, valid, test, pooled, task:NAME, a file path; "
             r"did you mean test\?$"),
    ("all_avaliable", r"; did you mean all-available\?$"),
    ("tsk:BQ", r"^--fit-on: 'tsk:BQ' is not one of .*; did you mean task:BQ\?$"),
    ("bogus", "^--fit-on: 'bogus' is not one of all-available, train, valid, test, pooled, task:NAME, a file path$"),
    ("task:NOPE", "^--fit-on task:NOPE"),
])
def test_bad_fit_on_names_the_option(text, message):
    with pytest.raises(StsevalError, match=message):
        FitSource.parse(text)


def test_fit_on_a_folder_asks_for_a_sentence_file(tmp_path):
    with pytest.raises(StsevalError, match=f"^--fit-on: {tmp_path} is a folder; give a file with one sentence"):
        FitSource.parse(str(tmp_path))


def test_all_available_means_the_split_files_present_for_whiten_and_simcse_alike(data_dir):
    bq, atec = TASKS["BQ"], TASKS["ATEC"]
    assert available_splits(bq, data_dir) == ["train", "valid", "test"]
    assert available_splits(atec, data_dir) == ["valid", "test"]
    fit, train = FitSource.parse("all-available"), parse_train_on("all-available", [bq, atec], data_dir)
    assert fit.own_splits(atec, data_dir) == train.own_splits(atec, data_dir) == ["valid", "test"]
    assert fit.fit_splits(bq, data_dir) == "train+valid+test" and fit.fit_splits(atec, data_dir) == "valid+test"
    assert FitSource.parse("valid").fit_splits(bq, data_dir) == ""  # only all-available varies by task
    assert FitSource.parse("pooled").own_splits(bq, data_dir) == []


def test_a_split_some_task_lacks_is_refused_by_the_option_that_asked_for_it(data_dir):
    tasks = [TASKS["BQ"], TASKS["ATEC"]]
    with pytest.raises(StsevalError, match=r"^--fit-on: ATEC has no 'train' split \(present: valid, test\)"):
        parse_fit_on(["valid", "train"], tasks, data_dir)
    with pytest.raises(StsevalError, match="^--train-on: ATEC has no 'train' split"):
        parse_train_on("train", tasks, data_dir)
    for text in ("pooled", "task:BQ"):
        with pytest.raises(StsevalError, match=f"^--train-on: '{text}' is not one of all-available, train, valid, "
                                               "test, a file with one sentence per line$"):
            parse_train_on(text, tasks, data_dir)
    with pytest.raises(StsevalError, match="^--train-on: file not found: nofile.txt$"):
        parse_train_on("nofile.txt", tasks, data_dir)
    with pytest.raises(StsevalError, match=r"^--train-on: .*; did you mean train\?$"):
        parse_train_on("trian", tasks, data_dir)
    assert parse_fit_on(["test", "test", "valid"], tasks, data_dir) == (FitSource("split", "test"),
                                                                        FitSource("split", "valid"))


def test_whiten_run_spec_holds_parsed_values(data_dir, tmp_path):
    run = parse_whiten_run(models=["default", "default"], poolings="cls,last-avg", dims="full,128", tasks="atec,BQ",
                           fit_on=["all-available", "task:bq"], data_dir=data_dir, out=tmp_path / "o",
                           prefix="query: ", backend="int8")
    assert [spec.name for spec in run.tasks] == ["ATEC", "BQ"] and run.dims == (None, 128)
    assert [source.label for source in run.fit_on] == ["all-available", "task:BQ"]
    [encode] = run.encoders  # a model given twice is one model
    assert (encode.model, encode.poolings, encode.prefix, encode.backend) == (
        "default", (Pooling("cls"), Pooling("last-avg")), "query: ", "int8")
    assert run.results_path == tmp_path / "o" / "whiten.csv"


@pytest.mark.parametrize("overrides, option", [
    ({"poolings": "cls,avg"}, "--pooling"), ({"dims": "0"}, "--dims"), ({"tasks": "NOPE"}, "--tasks"),
    ({"split": "train"}, "--split"), ({"fit_on": []}, "--fit-on"),
])
def test_whiten_options_are_refused_naming_them(data_dir, overrides, option):
    given = dict(models=["default"], poolings="cls", dims="full", tasks="ATEC", fit_on=["test"], data_dir=data_dir)
    with pytest.raises(StsevalError, match=f"^{option}"):
        parse_whiten_run(**{**given, **overrides})


@pytest.mark.parametrize("overrides, option", [
    ({"dropouts": "0.1,1.5"}, "--dropout"), ({"loss": "triplet"}, "--loss"),
    ({"max_sentences": "1"}, "--max-sentences"),
    ({"batch_size": 1}, "--batch-size"), ({"learning_rate": 0}, "--lr"), ({"epochs": 0}, "--epochs"),
    ({"max_eval_pairs": 5}, "--max-eval-pairs"), ({"curve_pairs": 3}, "--curve-pairs"),
    ({"eval_steps": 0}, "--eval-steps"),
    ({"train_on": "train"}, "--train-on"), ({"split": "train"}, "--split"), ({"poolings": "mean"}, "--pooling"),
])
def test_simcse_options_are_refused_naming_them(data_dir, overrides, option):
    given = dict(model="default", tasks="BQ,ATEC", poolings="cls", dropouts="0.1", data_dir=data_dir)
    with pytest.raises(StsevalError, match=f"^{option}"):
        parse_simcse_run(**{**given, **overrides})


def test_simcse_run_spec_holds_parsed_values(data_dir):
    run = parse_simcse_run(model="default", tasks=["BQ"], poolings=["cls", "last-avg"], dropouts="0.3,0.1,0.3",
                           max_sentences="all", loss="princeton", batch_size=32, curve_pairs=0, data_dir=data_dir)
    assert run.dropouts == (Dropout(0.3), Dropout(0.1)) and run.max_sentences is None and run.curve_pairs == 0
    assert (run.training.loss, run.training.batch_size) == ("princeton", 32)
    assert run.train_on == FitSource("all-available") and run.encode.poolings == (Pooling("cls"), Pooling("last-avg"))


@pytest.mark.parametrize("overrides, option", [
    ({"pooling": "cls,max"}, "--pooling"), ({"methods": "raw"}, "--methods"), ({"top_k": 5}, "--top-k"),
    ({"dims": "full,x"}, "--dims"), ({"split": "train"}, "--split"),
])
def test_sweep_options_are_refused_naming_them(data_dir, overrides, option):
    with pytest.raises(StsevalError, match=f"^{option}"):
        parse_sweep_run(**{**dict(model="default", tasks="ATEC", data_dir=data_dir), **overrides})


def _build_options(data_dir: Path, tmp_path: Path) -> dict:
    """index build options that parse: ATEC's test split of `data_dir` into a fresh folder."""
    return dict(index_dir=tmp_path / "index", task="atec", split="test", data_dir=data_dir)


def test_index_build_spec_holds_parsed_values(data_dir, tmp_path):
    from stseval.runs.specs.index import parse_index_build

    spec = parse_index_build(**_build_options(data_dir, tmp_path), pooling="cls", whiten_dims=8, prefix="query: ")
    assert (spec.task, spec.split, spec.sentences_file) == (TASKS["ATEC"], "test", None)
    assert (str(spec.pooling), spec.fit_whitening_dims, spec.whitening_file, spec.prefix) == ("cls", 8, None, "query: ")
    assert spec.data_dir == data_dir and spec.index_dir == tmp_path / "index"
    sentences = tmp_path / "corpus.txt"
    sentences.write_text("一\n二\n", encoding="utf-8")
    from_file = parse_index_build(index_dir=tmp_path / "index", sentences=sentences)
    assert (from_file.task, from_file.sentences_file, from_file.pooling) == (None, sentences, Pooling("last-avg"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.pooling = "max"  # type: ignore[misc]


@pytest.mark.parametrize("overrides, message", [
    ({"task": "NOPE"}, "^--task: unknown task 'NOPE'"),
    ({"task": "ATEC,BQ"}, "^--task: give one task, got 'ATEC,BQ'$"),
    ({"task": None}, "^give exactly one of --task .* or --sentences FILE$"),
    ({"sentences": Path("corpus.txt")}, "^give exactly one of --task .* or --sentences FILE$"),
    ({"whitening": Path("k.npz"), "whiten_dims": 8}, "^give either --whitening FILE or --whiten-dims K, not both$"),
    ({"pooling": "cls,max"}, "^--pooling: give one pooling, got 'cls,max'$"),
    ({"pooling": "lastavg"}, "^--pooling: unknown pooling 'lastavg'; did you mean last-avg?"),
    ({"precision": "fp8"}, "^--precision"),
    ({"threads": 0}, "^--threads"),
    ({"model": "./no/such/model"}, "^--model ./no/such/model: no such folder$"),
    ({"whitening": Path("no/such/k.npz")}, "^--whitening no/such/k.npz: file not found$"),
    ({"split": "train"}, r"^--split: ATEC has no 'train' split in .* \(present: valid, test\)$"),
])
def test_index_build_options_are_refused_in_one_line_naming_them(data_dir, tmp_path, overrides, message):
    from stseval.runs.specs.index import parse_index_build

    with pytest.raises(StsevalError, match=message) as refused:
        parse_index_build(**{**_build_options(data_dir, tmp_path), **overrides})
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "index").exists()


def test_index_build_refuses_a_missing_sentence_file_and_an_unwritable_folder(tmp_path):
    from stseval.runs.specs.index import parse_index_build

    with pytest.raises(StsevalError, match="^--sentences no/such.txt: file not found$"):
        parse_index_build(index_dir=tmp_path / "index", sentences=Path("no/such.txt"))
    sentences, a_file = tmp_path / "corpus.txt", tmp_path / "a-file"
    sentences.write_text("一\n", encoding="utf-8")
    a_file.write_text("", encoding="utf-8")
    with pytest.raises(StsevalError, match="^--index-dir"):
        parse_index_build(index_dir=a_file / "index", sentences=sentences)


def test_index_build_refuses_a_bad_data_line_with_its_file_and_line(data_dir, tmp_path):
    from stseval.runs.specs.index import parse_index_build

    with open(data_dir / "ATEC" / "ATEC.test.data", "a", encoding="utf-8") as handle:
        handle.write("一\t二\tnot-a-score\n")
    with pytest.raises(StsevalError, match="ATEC.test.data:2"):
        parse_index_build(**_build_options(data_dir, tmp_path))


def test_index_search_spec_joins_query_arguments_and_the_queries_file(tmp_path):
    from stseval.runs.specs.index import parse_index_search

    queries = tmp_path / "queries.txt"
    queries.write_text("二\n\n三\n", encoding="utf-8")
    spec = parse_index_search(index_dir=tmp_path, queries=["一"], queries_file=str(queries), top_k=3)
    assert (spec.queries, spec.top_k, spec.model, spec.precision) == (("一", "二", "三"), 3, None, None)
    with pytest.raises(StsevalError, match="^--index-dir .*: no such folder; build one with `stseval index build`$"):
        parse_index_search(index_dir=tmp_path / "none", queries=["一"])
    with pytest.raises(StsevalError, match="^give at least one QUERY or --queries FILE$"):
        parse_index_search(index_dir=tmp_path)
    with pytest.raises(StsevalError, match="^--precision"):
        parse_index_search(index_dir=tmp_path, queries=["一"], precision="fp8")


def test_report_spec_splits_keys_and_refuses_options_naming_them(tmp_path):
    from stseval.runs.specs.report import parse_report

    spec = parse_report(paths=[tmp_path], rows="model, pooling", metrics=["spearman_cosine"])
    assert (spec.paths, spec.rows, spec.cols, spec.metrics) == ((tmp_path,), ("model", "pooling"), ("task",),
                                                                ("spearman_cosine",))
    assert parse_report(paths=[tmp_path], cols="").cols == ("task",)  # as report.grids.parse_keys(...) or ["task"]
    with pytest.raises(StsevalError, match="^no/such.csv: no such results file or folder$"):
        parse_report(paths=[tmp_path, Path("no/such.csv")])
    with pytest.raises(StsevalError, match="^--format csv: choose grid or mteb$"):
        parse_report(paths=[tmp_path], output_format="csv")
    with pytest.raises(StsevalError, match="^--plot rotation: .*; --best applies to grids only"):
        parse_report(paths=[tmp_path], plot="rotation", best=True)
