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
