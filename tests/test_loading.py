"""encoders/loading.py: what load_encoder reads besides the weights (the tokenizer's added tokens)."""

import json

import pytest

from stseval.encoders import loading
from tiny_models import SENTENCES, make_bert


@pytest.fixture(autouse=True)
def stseval_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_tokenizer_read_from_the_head_of_tokenizer_json_is_the_same_tokenizer(tmp_path):
    """The default model's folder has no added_tokens_decoder in tokenizer_config.json; load_encoder then hands
    transformers the added tokens from the head of tokenizer.json instead of letting it parse the whole file."""
    from transformers import AutoTokenizer

    folder = make_bert(tmp_path / "bert")
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("added_tokens_decoder", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "special_tokens_map.json").unlink(missing_ok=True)
    kwargs = loading._added_tokens_kwargs(folder)
    assert sorted(str(token) for token in kwargs["added_tokens_decoder"].values()) == \
        ["[CLS]", "[MASK]", "[PAD]", "[SEP]", "[UNK]"]
    plain, ours = AutoTokenizer.from_pretrained(folder), loading.load_encoder(str(folder)).tokenizer
    texts = [*SENTENCES, "", "[CLS] 好 [MASK]", "a[SEP]b", "今天天气很好" * 20]
    for options in ({"truncation": True, "max_length": 16}, {"padding": True}):
        assert dict(ours(texts, **options)) == dict(plain(texts, **options))
    assert ours.added_tokens_decoder == plain.added_tokens_decoder
    assert ours.all_special_ids == plain.all_special_ids and ours.pad_token_id == plain.pad_token_id
    (folder / "added_tokens.json").write_text("{}", encoding="utf-8")  # transformers must merge it: not ours to read
    assert loading._added_tokens_kwargs(folder) == {}


def test_reading_added_tokens_prints_nothing(tmp_path, capfd):
    folder = make_bert(tmp_path / "bert")
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("added_tokens_decoder", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "special_tokens_map.json").unlink(missing_ok=True)
    capfd.readouterr()  # make_bert's own progress bar
    assert loading._added_tokens_kwargs(folder)["added_tokens_decoder"]
    assert capfd.readouterr() == ("", "")  # the tokenizers library printed "Ignored unknown kwarg option id"
