"""The model simcse-train scores after training is encoded exactly as the one before training.

Speed of the two, side by side in one process: benchmarks/simcse_eval_paths.py.
"""

from tiny_models import make_bert


def test_the_after_training_path_encodes_like_the_before_training_path(tmp_path):
    """simcse-train scores the base model with load_encoder(base) and the trained one with
    load_encoder(saved folder): for the same weights both give the same vectors, dtype and inputs."""
    import numpy as np

    from stseval.common.settings import Dropout, Pooling
    from stseval.encoders.encoder import encode, load_encoder
    from stseval.methods.simcse.model import build_simcse_model
    from tiny_models import SENTENCES

    base_folder = make_bert(tmp_path / "tiny-bert", with_pooler=False)
    # the trainer's save, no steps
    build_simcse_model(base_folder, Pooling("last-avg"), Dropout(0.3), 32).save(str(tmp_path / "saved"))
    before, after = load_encoder(str(base_folder)), load_encoder(str(tmp_path / "saved"))
    assert {p.dtype for p in after.model.parameters()} == {p.dtype for p in before.model.parameters()}
    assert after.model.config._attn_implementation == before.model.config._attn_implementation
    assert after.tokenizer(list(SENTENCES))["input_ids"] == before.tokenizer(list(SENTENCES))["input_ids"]
    assert not after.model.training and after.device == before.device
    vectors_before = encode(before, list(SENTENCES), ["last-avg", "cls"], max_length=32, show_progress=False)
    vectors_after = encode(after, list(SENTENCES), ["last-avg", "cls"], max_length=32, show_progress=False)
    for pooling in ("last-avg", "cls"):
        np.testing.assert_allclose(vectors_after[pooling], vectors_before[pooling], rtol=0, atol=1e-6)
