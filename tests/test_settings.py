"""stseval.common.settings: Pooling and Dropout parsed once, written to rows by str() and read back."""

import pytest
from typer.testing import CliRunner

import stseval
from stseval.common.errors import StsevalError
from stseval.common.settings import (
    LAYER_AVG,
    POOLING_NAMES,
    POOLINGS,
    Dropout,
    Pooling,
    layer_avg_index,
    parse_dropouts,
    parse_poolings,
)
from stseval.runs.specs import parse_one_pooling, parse_simcse_run, parse_whiten_run

EVERY_NAME = [*POOLING_NAMES, *(f"{LAYER_AVG}:{layer}" for layer in (0, 1, 12, 24))]


# --- Pooling -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", EVERY_NAME)
def test_every_pooling_name_round_trips_through_its_value(name):
    pooling = Pooling.parse(name)
    assert str(pooling) == name  # the text a results row holds, unchanged
    assert Pooling.parse(str(pooling)) == pooling == Pooling.read(name)
    assert parse_poolings(name) == [pooling] and parse_poolings([pooling]) == [pooling]


def test_a_pooling_says_what_it_needs_from_the_model():
    assert [name for name in POOLING_NAMES if Pooling.parse(name).needs_pooler] == ["pooler", "pooler-tanh"]
    assert [name for name in EVERY_NAME if not Pooling.parse(name).needs_hidden_states] == ["sentence"]
    layered = [pooling for pooling in map(Pooling.parse, EVERY_NAME) if pooling.is_layer]
    assert [(pooling.kind, pooling.layer) for pooling in layered] == [(LAYER_AVG, 0), (LAYER_AVG, 1),
                                                                     (LAYER_AVG, 12), (LAYER_AVG, 24)]
    assert Pooling.parse("cls").layer is None and Pooling.parse("sentence").is_sentence


def test_all_layer_ranges_spelling_and_duplicates():
    assert parse_poolings("all") == [Pooling(name) for name in POOLINGS]  # the token poolings, grid order
    assert Pooling("sentence") not in parse_poolings("all")
    assert [str(p) for p in parse_poolings(" Layer-Avg:03 , layer-avg:2-4,CLS, cls")] == [
        "layer-avg:3", "layer-avg:2", "layer-avg:4", "cls"]
    assert Pooling.parse("LAST-AVG") == Pooling("last-avg")


@pytest.mark.parametrize("given, message", [
    ("xyzzy", "--pooling: unknown pooling 'xyzzy'; choose from cls, pooler, pooler-tanh, last-avg, first-last-avg, "
             "last2avg, max, sentence or 'all'; or layer-avg:N (hidden_states[N]), layer-avg:A-B"),
    ("lastavg", "--pooling: unknown pooling 'lastavg'; did you mean last-avg? choose from cls, "),
    ("layer-avg:x", "--pooling: 'layer-avg:x' is not layer-avg:N or layer-avg:A-B with layer numbers "
                    "(0 is the embedding output)"),
    ("layer-avg:3-1", "--pooling: 'layer-avg:3-1' runs backwards; write layer-avg:1-3"),
    ("", "--pooling: no pooling given; choose from cls, "),
])
def test_pooling_errors_name_the_option_in_today_s_words(given, message):
    with pytest.raises(StsevalError) as raised:
        parse_poolings(given)
    assert str(raised.value).startswith(message)


def test_one_pooling_parsers_refuse_several():
    with pytest.raises(StsevalError, match="^--pooling: 'all' names 7 poolings; give one"):
        Pooling.parse("all")
    with pytest.raises(StsevalError, match="^--pooling: give one pooling, got 'cls,max'"):
        parse_one_pooling("cls,max")
    assert parse_one_pooling("layer-avg:2") == Pooling(LAYER_AVG, 2)


@pytest.mark.parametrize("kind, layer", [("mean", None), ("cls", 1), (LAYER_AVG, None), (LAYER_AVG, -1),
                                         (LAYER_AVG, True)])
def test_a_pooling_value_cannot_be_built_wrong(kind, layer):
    with pytest.raises(ValueError):
        Pooling(kind, layer)


def test_the_lenient_row_reader_never_raises():
    assert Pooling.read("mean") is None and Pooling.read("layer-avg:") is None and Pooling.read(float("nan")) is None
    assert layer_avg_index("layer-avg:7") == 7 and layer_avg_index(Pooling(LAYER_AVG, 7)) == 7
    assert layer_avg_index("cls") is None and layer_avg_index("layer-avg:x") is None


# --- Dropout -------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate, text", [(0.1, "0.1"), (0.3, "0.3"), (0.0, "0"), (0.05, "0.05"), (1e-05, "1e-05"),
                                        (0.999, "0.999")])
def test_dropout_writes_today_s_row_text_and_reads_it_back(rate, text):
    dropout = Dropout(rate)
    assert str(dropout) == text == f"{rate:g}" and float(dropout) == dropout.rate == rate
    assert Dropout.parse(text) == dropout and parse_dropouts(text) == [dropout]


@pytest.mark.parametrize("call, message", [
    (lambda: parse_dropouts("0.1,x"), "--dropout: 'x' is not a number in [0, 1)"),
    (lambda: parse_dropouts("1.0"), "--dropout: 1.0 is outside [0, 1); Su used 0.1 and 0.3"),
    (lambda: parse_dropouts([0.1, -0.5]), "--dropout: -0.5 is outside [0, 1); Su used 0.1 and 0.3"),
    (lambda: parse_dropouts(" , "), "--dropout: give at least one value, e.g. 0.1,0.3"),
    (lambda: Dropout(1.0), "--dropout: 1.0 is outside [0, 1); Su used 0.1 and 0.3"),
    (lambda: Dropout.parse("nope"), "--dropout: 'nope' is not a number in [0, 1)"),
    (lambda: Dropout(True), "--dropout: True is not a number in [0, 1)"),
])
def test_dropout_errors_name_the_option(call, message):
    with pytest.raises(StsevalError) as raised:
        call()
    assert str(raised.value) == message


def test_dropouts_keep_their_order_and_drop_repeats():
    assert parse_dropouts("0.3, 0.1,0.30") == [Dropout(0.3), Dropout(0.1)]
    assert parse_dropouts([Dropout(0.1), 0.1, "0.2"]) == [Dropout(0.1), Dropout(0.2)]


# --- one parser for the CLI and the API ----------------------------------------------------------

class _Counts:
    """A SentenceEncoder stand-in; a bad pooling is refused before it encodes anything."""

    name, fingerprint, dimension = "counts-2", "counts-2-v1", 2

    def supports(self, pooling):
        return pooling in ("cls", "last-avg")

    def embed_batches(self, texts, poolings, max_length, batch_size):
        raise AssertionError("a bad pooling is refused before encoding")


BAD_POOLINGS = ["mean", "lastavg", "layer-avg:x", "layer-avg:3-1", "layer-avg:", "cls,avg", " , "]


@pytest.mark.parametrize("given", BAD_POOLINGS)
def test_the_api_and_the_cli_refuse_a_pooling_in_the_same_words(given):
    with pytest.raises(StsevalError) as cli:
        parse_whiten_run(models=["default"], poolings=given, dims="full", tasks="STS-B", fit_on=["test"])
    with pytest.raises(StsevalError) as simcse:
        parse_simcse_run(model="default", tasks="STS-B", poolings=given, dropouts="0.1")
    with pytest.raises(StsevalError) as api:
        stseval.encode(_Counts(), ["好"], pooling=given)
    cli_text, api_text = str(cli.value), str(api.value)
    assert str(simcse.value) == cli_text and cli_text.startswith("--pooling: ")
    assert api_text.startswith(f"pooling={given!r}: ")
    assert api_text.removeprefix(f"pooling={given!r}: ") == cli_text.removeprefix("--pooling: ")


def test_the_command_line_prints_the_parser_s_message():
    from stseval.cli import app

    result = CliRunner().invoke(app, ["whiten", "--pooling", "lastavg", "--tasks", "STS-B"])
    assert result.exit_code == 2
    expected = str(pytest.raises(StsevalError, parse_poolings, "lastavg").value)
    assert f"stseval: {expected}" in result.output


def test_the_api_takes_pooling_values_too():
    with pytest.raises(StsevalError, match=r"^pooling=max: not available for counts-2"):
        stseval.encode(_Counts(), ["好"], pooling=Pooling("max"))


def test_parse_poolings_keeps_pooling_values_as_they_are():
    """A value crossing a boundary is parsed already: parse_poolings keeps it (the same object), reads only text."""
    value = Pooling(LAYER_AVG, 2)
    parsed = parse_poolings([value, "cls", value])
    assert parsed[0] is value and [str(each) for each in parsed] == ["layer-avg:2", "cls"]
    assert parse_poolings(value)[0] is value
