"""load_encoder and encode on tiny random models (BERT with and without pooler, RoFormer)."""

import json
import warnings

import numpy as np
import pytest
import torch

from stseval.common.errors import StsevalError
from stseval.encoders.cache import EmbeddingCache
from stseval.encoders.encoder import QUERY_ROWS, QUERY_WIDTH_STEP, encode, load_encoder
from stseval.encoders.pooling import POOLINGS
from tiny_models import SENTENCES, make_bert, make_roformer, make_sentence_transformers_folder

ALL_BUT_POOLER = [name for name in POOLINGS if name not in ("pooler", "pooler-tanh")]


pytestmark = pytest.mark.usefixtures("one_torch_thread", "stseval_home")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "bert": make_bert(root / "bert"),
        "bert-no-pooler": make_bert(root / "bert-no-pooler", with_pooler=False),
        "roformer": make_roformer(root / "roformer"),
        "sentence-transformers": make_sentence_transformers_folder(root / "st"),
    }


@pytest.fixture(scope="module")
def bert(model_dirs):
    return load_encoder(str(model_dirs["bert"]))


@pytest.fixture(scope="module")
def roformer(model_dirs):
    return load_encoder(str(model_dirs["roformer"]))


class count_forwards:
    """Context manager counting a model's forward passes and the distinct sentences each one carried."""

    def __init__(self, model):
        self.batch_sizes = []
        self._handle = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        # distinct rows: encode fills a batch up with copies of its first sentence (fixed shapes)
        self.batch_sizes.append(int(torch.unique(kwargs["input_ids"], dim=0).shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._handle.remove()

    @property
    def calls(self):
        return len(self.batch_sizes)

    @property
    def sentences(self):
        return sum(self.batch_sizes)


def _by_hand(encoder, text, name):
    """Pool one sentence, alone and unpadded, straight from the model's hidden states (numpy)."""
    features = encoder.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        outputs = encoder.model(**features, output_hidden_states=True)
    layers = [h[0].numpy() for h in outputs.hidden_states]  # (s, h) per layer, no padding at all
    last = layers[-1]
    if name == "cls":
        return last[0]
    if name in ("pooler", "pooler-tanh"):
        dense = encoder.model.pooler.dense
        linear = dense.weight.detach().numpy() @ last[0] + dense.bias.detach().numpy()
        return np.tanh(linear) if name == "pooler-tanh" else linear
    if name == "last-avg":
        return last.mean(axis=0)
    if name == "first-last-avg":
        return ((layers[1] + last) / 2).mean(axis=0)
    if name == "last2avg":
        return ((layers[-2] + last) / 2).mean(axis=0)
    return last.max(axis=0)


def test_each_pooling_in_a_padded_batch_matches_the_sentence_alone(bert):
    texts = list(SENTENCES)  # lengths 1..7 characters: every short one is padded in the batch
    vectors = encode(bert, texts, list(POOLINGS), max_length=32, batch_size=len(texts), show_progress=False)
    for name in POOLINGS:
        assert vectors[name].shape == (len(texts), 32) and vectors[name].dtype == np.float32
        for row, text in enumerate(texts):
            np.testing.assert_allclose(vectors[name][row], _by_hand(bert, text, name), atol=1e-5, err_msg=name)


@pytest.mark.parametrize("model_name", ["bert", "roformer"])
def test_padding_does_not_change_vectors(model_name, bert, roformer):
    encoder = {"bert": bert, "roformer": roformer}[model_name]
    short, long = "好", "这个中国人来了怎么办"
    names = [name for name in POOLINGS if encoder.supports(name)]
    alone = encode(encoder, [short], names, max_length=32, show_progress=False)
    padded = encode(encoder, [short, long], names, max_length=32, show_progress=False)
    for name in names:
        np.testing.assert_allclose(alone[name][0], padded[name][0], atol=1e-5, err_msg=name)


def test_model_is_in_eval_mode_so_encoding_is_deterministic(bert, pinned_torch):
    assert not bert.model.training
    first = encode(bert, list(SENTENCES), ["cls"], max_length=32, show_progress=False)
    second = encode(bert, list(SENTENCES), ["cls"], max_length=32, show_progress=False)
    np.testing.assert_array_equal(first["cls"], second["cls"])


def test_one_forward_pass_per_batch_serves_every_pooling(bert):
    texts = [f"{a}{b}" for a in "好我你他" for b in "好我你他"]  # 16 sentences of one token length
    with count_forwards(bert.model) as counter:
        vectors = encode(bert, texts, list(POOLINGS), max_length=32, batch_size=3, show_progress=False)
    assert counter.calls == 6  # ceil(16 / 3) batches, not 7 poolings x 6 batches
    assert set(vectors) == set(POOLINGS)


def test_a_sentence_vector_does_not_depend_on_its_batch_company(tmp_path, pinned_torch):
    """Batches of one token length and a fixed row count: the same sentence, bit for bit, whatever
    else is encoded with it (issue: cells of one key differed by 4e-4 between runs). 384 wide like
    e5-small: at 32 the matrix products are too small for batch shapes to change their rounding."""
    bert = load_encoder(str(make_bert(tmp_path / "wide", hidden_size=384, num_attention_heads=12,
                                      intermediate_size=1536)))
    target = "今天天气很好"
    companies = [[], ["好"], ["这个中国人来了怎么办", "我喜欢吃苹果"], [f"{a}天气很好" for a in "我你他好"] * 3,
                 [f"{a}{b}" for a in "今天气很好我" for b in "喜欢吃苹果的"]]
    vectors = [encode(bert, [target, *company], list(ALL_BUT_POOLER), max_length=32, batch_size=8,
                      show_progress=False) for company in companies]
    for other in vectors[1:]:
        for name in ALL_BUT_POOLER:
            np.testing.assert_array_equal(other[name][0], vectors[0][name][0], err_msg=name)


def test_order_is_restored_after_dedup_and_length_sort(bert):
    texts = ["借钱", "这个中国人来了", "借钱", "好", "今天天气很好", "好", "借钱"]
    with count_forwards(bert.model) as counter:
        vectors = encode(bert, texts, ["last-avg", "cls"], max_length=32, batch_size=2, show_progress=False)
    assert counter.sentences == 4  # four distinct sentences
    for row, text in enumerate(texts):
        np.testing.assert_allclose(vectors["last-avg"][row], _by_hand(bert, text, "last-avg"), atol=1e-5)
        np.testing.assert_allclose(vectors["cls"][row], _by_hand(bert, text, "cls"), atol=1e-5)


def test_empty_input_gives_empty_arrays(bert):
    vectors = encode(bert, [], ["cls"], max_length=32, show_progress=False)
    assert vectors["cls"].shape == (0, 32)


def test_cache_hit_encodes_nothing(bert, tmp_path):
    cache = EmbeddingCache(tmp_path / "embeddings")
    first = encode(bert, list(SENTENCES), ["cls", "max"], max_length=32, cache=cache, show_progress=False)
    with count_forwards(bert.model) as counter:
        again = encode(bert, list(SENTENCES), ["cls", "max"], max_length=32, cache=cache, show_progress=False)
        reread = encode(
            bert, list(SENTENCES), ["cls", "max"], max_length=32,
            cache=EmbeddingCache(tmp_path / "embeddings"), show_progress=False,
        )
    assert counter.calls == 0
    for name in ("cls", "max"):
        np.testing.assert_array_equal(again[name], first[name])
        np.testing.assert_array_equal(reread[name], first[name])


def test_cache_encodes_only_the_new_sentences(bert, tmp_path):
    cache = EmbeddingCache(tmp_path)
    encode(bert, list(SENTENCES[:5]), ["cls"], max_length=32, cache=cache, show_progress=False)
    with count_forwards(bert.model) as counter:
        vectors = encode(bert, list(SENTENCES), ["cls"], max_length=32, cache=cache, show_progress=False)
    assert counter.sentences == len(SENTENCES) - 5
    for row, text in enumerate(SENTENCES):
        np.testing.assert_allclose(vectors["cls"][row], _by_hand(bert, text, "cls"), atol=1e-5)


def test_corrupt_cache_file_is_detected_and_recomputed(bert, tmp_path):
    cache_root = tmp_path / "embeddings"
    settings = dict(max_length=32, show_progress=False)
    first = encode(bert, list(SENTENCES), ["last-avg"], cache=EmbeddingCache(cache_root), **settings)
    (vectors_path,) = cache_root.glob("*/*.vectors.npy")
    payload = bytearray(vectors_path.read_bytes())
    payload[-7] ^= 0x55  # one flipped bit pattern in the last vector
    vectors_path.write_bytes(bytes(payload))

    with count_forwards(bert.model) as counter, pytest.warns(RuntimeWarning, match="corrupt"):
        second = encode(bert, list(SENTENCES), ["last-avg"], cache=EmbeddingCache(cache_root), **settings)
    assert counter.sentences == len(SENTENCES)
    np.testing.assert_allclose(second["last-avg"], first["last-avg"], atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten entry is clean
        encode(bert, list(SENTENCES), ["last-avg"], cache=EmbeddingCache(cache_root), **settings)


def test_prefix_is_prepended_and_changes_the_cache_key(bert, tmp_path):
    cache = EmbeddingCache(tmp_path)
    plain = encode(bert, list(SENTENCES), ["cls"], max_length=32, cache=cache, show_progress=False)
    with count_forwards(bert.model) as counter:
        prefixed = encode(
            bert, list(SENTENCES), ["cls"], max_length=32, prefix="query: ", cache=cache, show_progress=False
        )
    assert counter.sentences == len(SENTENCES)  # a different prefix is a cache miss
    assert not np.allclose(prefixed["cls"], plain["cls"])
    by_hand = encode(bert, ["query: " + text for text in SENTENCES], ["cls"], max_length=32, show_progress=False)
    np.testing.assert_allclose(prefixed["cls"], by_hand["cls"], atol=1e-6)


def test_new_pooling_for_cached_sentences_still_encodes(bert, tmp_path):
    cache = EmbeddingCache(tmp_path)
    encode(bert, list(SENTENCES), ["cls"], max_length=32, cache=cache, show_progress=False)
    with count_forwards(bert.model) as counter:
        encode(bert, list(SENTENCES), ["cls", "max"], max_length=32, cache=cache, show_progress=False)
    assert counter.sentences == len(SENTENCES)


def test_truncation_to_max_length(bert):
    long = "今天天气很好我喜欢吃苹果"
    truncated = encode(bert, [long], ["last-avg"], max_length=6, show_progress=False)
    # max_length counts [CLS] and [SEP]: 4 characters survive
    np.testing.assert_allclose(truncated["last-avg"][0], _by_hand(bert, long[:4], "last-avg"), atol=1e-5)


def test_progress_bar_reports_sentences_per_second(bert, capsys):
    encode(bert, list(SENTENCES), ["cls"], max_length=32, show_progress=True)
    assert "sent/s" in capsys.readouterr().err


def test_pooler_with_and_without_tanh_on_a_real_model(bert):
    vectors = encode(bert, list(SENTENCES), ["pooler", "pooler-tanh"], max_length=32, show_progress=False)
    np.testing.assert_allclose(vectors["pooler-tanh"], np.tanh(vectors["pooler"]), atol=1e-6)
    hf_pooler_output = []
    for text in SENTENCES:
        with torch.no_grad():
            hf_pooler_output.append(bert.model(**bert.tokenizer(text, return_tensors="pt")).pooler_output[0].numpy())
    np.testing.assert_allclose(vectors["pooler-tanh"], np.stack(hf_pooler_output), atol=1e-5)


def test_model_saved_without_pooler_has_none(model_dirs):
    encoder = load_encoder(str(model_dirs["bert-no-pooler"]))
    assert not encoder.has_pooler
    assert encoder.model.pooler is None  # the randomly initialised pooler is dropped
    assert not encoder.supports("pooler") and not encoder.supports("pooler-tanh")
    assert all(encoder.supports(name) for name in ALL_BUT_POOLER)
    with pytest.raises(StsevalError, match=r"--pooling pooler.*no.*pooler|--pooling pooler"):
        encode(encoder, ["好"], ["cls", "pooler"], max_length=32, show_progress=False)


def test_config_flag_marks_a_model_pooler_less(tmp_path):
    folder = make_bert(tmp_path / "flagged")  # pooler weights are in the file ...
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "stseval_has_pooler": False}))  # ... but untrained
    encoder = load_encoder(str(folder))
    assert not encoder.has_pooler and encoder.model.pooler is None


def test_weights_missing_from_the_checkpoint_are_refused(tmp_path):
    folder = make_bert(tmp_path / "short")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))  # layer 2 has no weights
    with pytest.raises(StsevalError, match=r"--model .*lacks \d+ weight tensors .*encoder\.layer\.2.*partly random"):
        load_encoder(str(folder))


def test_roformer_has_no_pooler_but_every_other_pooling(roformer):
    assert not roformer.has_pooler
    vectors = encode(roformer, list(SENTENCES), ALL_BUT_POOLER, max_length=32, show_progress=False)
    assert all(vectors[name].shape == (len(SENTENCES), 32) for name in ALL_BUT_POOLER)


def test_unknown_pooling_is_a_clear_error(bert):
    with pytest.raises(StsevalError, match="--pooling: unknown pooling 'mean'"):
        encode(bert, ["好"], ["mean"], max_length=32, show_progress=False)


@pytest.mark.parametrize(
    ("option", "settings"), [("--max-length", {"max_length": 1}), ("--batch-size", {"batch_size": 0})]
)
def test_bad_settings_name_their_option(bert, option, settings):
    kwargs = {"max_length": 32, **settings}
    with pytest.raises(StsevalError, match=option):
        encode(bert, ["好"], ["cls"], show_progress=False, **kwargs)


def test_sentence_transformers_folder_loads_its_transformer(model_dirs, bert):
    encoder = load_encoder(str(model_dirs["sentence-transformers"]))
    assert encoder.folder == model_dirs["sentence-transformers"] / "0_Transformer"
    assert encoder.fingerprint == bert.fingerprint  # same seed, same files
    a = encode(encoder, list(SENTENCES), ["last-avg"], max_length=32, show_progress=False)
    b = encode(bert, list(SENTENCES), ["last-avg"], max_length=32, show_progress=False)
    np.testing.assert_allclose(a["last-avg"], b["last-avg"], atol=1e-6)


def test_fingerprints_follow_weights_and_tokenizer(model_dirs, bert, tmp_path):
    other_weights = load_encoder(str(make_bert(tmp_path / "seed1", seed=1)))
    assert other_weights.fingerprint != bert.fingerprint
    assert other_weights.tokenizer_fingerprint == bert.tokenizer_fingerprint
    no_pooler = load_encoder(str(model_dirs["bert-no-pooler"]))
    assert no_pooler.fingerprint != bert.fingerprint


def test_unknown_device_is_a_clear_error(model_dirs):
    with pytest.raises(StsevalError, match="--device"):
        load_encoder(str(model_dirs["bert"]), device="toaster")


class interrupt_after:
    """Context manager making the model raise KeyboardInterrupt on its (n+1)-th forward pass."""

    def __init__(self, model, n_forwards):
        self.left = n_forwards
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._handle.remove()


def test_interrupted_encode_keeps_finished_chunks_in_the_cache(bert, tmp_path, pinned_torch):
    """A kill during encoding loses one chunk at most: shards are written as encoding goes."""
    cache = EmbeddingCache(tmp_path / "cache")
    texts = [f"{a}{b}" for a in "好我" for b in "你他天气"]  # 8 sentences of one token length: 4 batches of 2
    settings = dict(max_length=16, batch_size=2, show_progress=False, cache_every=2)
    with interrupt_after(bert.model, 2), pytest.raises(KeyboardInterrupt):
        encode(bert, texts, ["cls", "last-avg"], cache=cache, **settings)  # dies in the 3rd batch
    with count_forwards(bert.model) as counter:
        resumed = encode(bert, texts, ["cls", "last-avg"], cache=EmbeddingCache(tmp_path / "cache"), **settings)
    assert counter.sentences == len(texts) - 4  # the first two batches came from the cache
    fresh = encode(bert, texts, ["cls", "last-avg"], max_length=16, batch_size=2, show_progress=False)
    for name in ("cls", "last-avg"):
        np.testing.assert_array_equal(resumed[name], fresh[name])


def test_ctrl_c_keeps_the_batches_of_an_unfinished_chunk(bert, tmp_path):
    """A chunk under cache_every (4,096) sentences is not lost on Ctrl-C: only the batch in flight is."""
    cache = EmbeddingCache(tmp_path / "cache")
    texts = [f"{a}{b}" for a in "好我" for b in "你他天气"]  # 8 sentences of one token length: 4 batches of 2
    settings = dict(max_length=16, batch_size=2, show_progress=False)  # the default cache_every: one chunk
    with interrupt_after(bert.model, 3), pytest.raises(KeyboardInterrupt):
        encode(bert, texts, ["cls", "last-avg"], cache=cache, **settings)  # dies in the 4th batch
    with count_forwards(bert.model) as counter:
        resumed = encode(bert, texts, ["cls", "last-avg"], cache=EmbeddingCache(tmp_path / "cache"), **settings)
    assert counter.sentences == 2  # the three finished batches came from the cache
    fresh = encode(bert, texts, ["cls", "last-avg"], **settings)
    for name in ("cls", "last-avg"):
        np.testing.assert_array_equal(resumed[name], fresh[name])


def test_cache_shards_are_written_every_chunk(bert, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    texts = [f"{a}{b}" for a in "好我" for b in "你他天气"]  # 8 sentences of one token length
    encode(bert, texts, "cls", max_length=16, batch_size=2, show_progress=False, cache=cache, cache_every=3)
    # 4 batches of 2: a shard after batches 2 (4 >= 3) and 4 (4 >= 3)
    assert len(list((tmp_path / "cache").glob("*/*.vectors.npy"))) == 2


def test_bad_processes_is_a_clear_error(model_dirs):
    with pytest.raises(StsevalError, match="--processes"):
        load_encoder(str(model_dirs["bert"]), processes=0)


def test_query_path_vector_does_not_depend_on_its_call_company(tmp_path):
    """The query path (QUERY_ROWS rows, widths rounded to QUERY_WIDTH_STEP): the same sentence, bit for bit,
    alone, among a few and among more sentences than any fixed batch holds; and within float rounding of the
    default path. 384 wide like e5-small, as in the test above."""
    bert = load_encoder(str(make_bert(tmp_path / "wide", hidden_size=384, num_attention_heads=12,
                                      intermediate_size=1536)))
    target = "今天天气很好"
    companies = [[], ["好"], ["今天天气不好"], ["这个中国人来了怎么办", "我喜欢吃苹果"],
                 [f"{a}天气很好" for a in "我你他好"] * 3, [f"{a}{b}" for a in "今天气很好我" for b in "喜欢吃苹果的"]]
    vectors = [encode(bert, [target, *company], list(ALL_BUT_POOLER), max_length=32, query=True,
                      show_progress=False) for company in companies]
    grid = encode(bert, [target], list(ALL_BUT_POOLER), max_length=32, show_progress=False)
    for name in ALL_BUT_POOLER:
        for other in vectors[1:]:
            np.testing.assert_array_equal(other[name][0], vectors[0][name][0], err_msg=name)
        # float32 sums of 384-1536 products in another blocking order: ~1e-6 relative, vectors of norm <~10
        np.testing.assert_allclose(vectors[0][name][0], grid[name][0], atol=1e-4, err_msg=name)


def test_query_path_runs_small_fixed_shape_forwards_and_caches_under_its_own_key(bert, tmp_path):
    texts = ["好", "借钱", "今天天气很好"]  # 1..6 characters: widths 4 and 8 after rounding to QUERY_WIDTH_STEP
    shapes: list[tuple[int, ...]] = []
    handle = bert.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        encode(bert, texts, ["cls"], max_length=32, query=True, show_progress=False)
    finally:
        handle.remove()
    assert all(rows == QUERY_ROWS and width % QUERY_WIDTH_STEP == 0 for rows, width in shapes), shapes
    assert len(shapes) < len(texts) + 1  # batched, not one pass per sentence plus fills
    cache = EmbeddingCache(tmp_path / "embeddings")
    grid = encode(bert, texts, ["cls"], max_length=32, cache=cache, show_progress=False)
    with count_forwards(bert.model) as counter:
        query = encode(bert, texts, ["cls"], max_length=32, cache=cache, query=True, show_progress=False)
    assert counter.sentences == len(texts)  # the grid path's vectors are not served to the query path
    np.testing.assert_allclose(query["cls"], grid["cls"], atol=1e-5)  # 32-wide: rounding differences only
    with count_forwards(bert.model) as counter:
        again = encode(bert, texts, ["cls"], max_length=32, cache=cache, query=True, show_progress=False)
    assert counter.calls == 0  # the query path's own vectors are cached
    np.testing.assert_array_equal(again["cls"], query["cls"])


def test_pooling_values_encode_bit_for_bit_as_their_names(bert):
    """encode() takes the Pooling values the runs carry (parsed once, at the edge) and gives exactly the arrays
    the names give, keyed by str(pooling), the names rows hold; the query path and supports() agree too."""
    from stseval.common.settings import LAYER_AVG, Pooling, parse_poolings
    from stseval.encoders.protocol import can_pool

    names = [*POOLINGS, f"{LAYER_AVG}:0", f"{LAYER_AVG}:1"]
    values = parse_poolings(names)
    assert all(isinstance(value, Pooling) for value in values) and [str(value) for value in values] == names
    texts = list(SENTENCES[:5])
    for query in (False, True):
        by_name = encode(bert, texts, names, max_length=32, show_progress=False, query=query)
        by_value = encode(bert, texts, values, max_length=32, show_progress=False, query=query)
        assert list(by_value) == list(by_name) == names
        for name in names:
            np.testing.assert_array_equal(by_value[name], by_name[name], err_msg=name)
    for value in [*values, Pooling("sentence"), Pooling(LAYER_AVG, bert.n_layers + 1)]:
        assert can_pool(bert, value) == bert.supports(str(value))
    assert not bert.supports("mean")


def test_encode_refuses_an_unavailable_pooling_value_with_the_name_users_typed(model_dirs):
    from stseval.common.settings import Pooling

    no_pooler = load_encoder(str(model_dirs["bert-no-pooler"]))
    with pytest.raises(StsevalError, match=r"^--pooling pooler-tanh,sentence: not available for model "):
        encode(no_pooler, ["好"], [Pooling("pooler-tanh"), Pooling("sentence")], max_length=32, show_progress=False)
