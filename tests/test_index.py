"""Index builds: atomic, incremental, refusing a broken base, and exact search equal to brute force."""

import json

import numpy as np
import pytest

from bot.engine import index
from bot.engine.assistant import Assistant
from bot.engine.index import (
    CURRENT,
    BuildRefused,
    IndexUnavailable,
    build_index,
    current_version,
    make_faiss_index,
    open_index,
)
from bot.engine.retrieval import stored_vectors
from tests.conftest import write_config


class CountingEncoder:
    """The real encoder, counting what it is asked to embed (to prove what a rebuild re-embeds)."""

    def __init__(self, inner):
        self.inner = inner
        self.model_id, self.dim = inner.model_id, inner.dim
        self.texts: list[str] = []

    def encode(self, texts, role="passage", batch_size=32):
        self.texts.extend(texts)
        return self.inner.encode(texts, role=role, batch_size=batch_size)


class CrashingEncoder(CountingEncoder):
    """Dies after the first batch, like a build killed halfway."""

    def encode(self, texts, role="passage", batch_size=32):
        if self.texts:
            raise KeyboardInterrupt("killed in the middle of the build")
        return super().encode(texts, role, batch_size)


def test_build_writes_a_version_and_switches_to_it(small_cfg, encoder):
    report = build_index(small_cfg, lambda: encoder, progress=False)
    assert report.entries == 7 and report.chunks > 7 and report.embedded == report.chunks
    assert current_version(small_cfg.index_root) == report.version
    data = open_index(small_cfg)
    assert data.faiss_index.ntotal == report.chunks == len(data.chunk_entry)
    assert data.manifest["model"] == "multilingual-e5-small"
    assert set(data.entries) >= {"dang-ky-khai-sinh", "mot-cua-lien-thong", "hoi-dap-cmnd-9-so"}


def test_rebuild_with_no_change_embeds_nothing(small_index, encoder):
    counting = CountingEncoder(encoder)
    again = build_index(small_index, lambda: counting, progress=False)
    assert again.up_to_date and again.embedded == 0
    forced = build_index(small_index, lambda: counting, force=True, progress=False)
    assert not forced.up_to_date and forced.embedded == 0
    assert counting.texts == []


def test_changing_one_section_re_embeds_only_that_chunk(small_index, kb_copy, encoder):
    path = kb_copy / "thu-tuc/dang-ky-ket-hon.md"
    path.write_text(path.read_text(encoding="utf-8").replace("Ngay trong ngày nhận đủ hồ sơ.",
                                                             "Trong ngày làm việc nhận đủ hồ sơ."), encoding="utf-8")
    counting = CountingEncoder(encoder)
    report = build_index(small_index, lambda: counting, progress=False)
    assert report.embedded == 1
    assert counting.texts == ["Đăng ký kết hôn — Thời hạn giải quyết Trong ngày làm việc nhận đủ hồ sơ ."]


def test_broken_base_is_refused_and_the_old_index_keeps_serving(small_index, kb_copy, encoder):
    before = current_version(small_index.index_root)
    assistant = Assistant(small_index, encoder=encoder).load()
    (kb_copy / "thu-tuc/hong.md").write_text("---\nid: hong\nloai: thu-tuc\n---\n", encoding="utf-8")
    with pytest.raises(BuildRefused) as refused:
        build_index(small_index, lambda: encoder, progress=False)
    assert any(p.path.endswith("thu-tuc/hong.md") for p in refused.value.kb.errors)
    assert current_version(small_index.index_root) == before
    answer = assistant.ask("đăng ký khai sinh cần giấy tờ gì")
    assert not answer.declined and answer.sources[0].id == "dang-ky-khai-sinh"


def test_crash_in_the_middle_leaves_the_old_index_and_keeps_finished_work(small_index, kb_copy, encoder,
                                                                            monkeypatch):
    before = current_version(small_index.index_root)
    monkeypatch.setattr(index, "EMBED_BATCH", 4)  # several batches from a few new sections
    for name in ("dang-ky-ket-hon", "dang-ky-khai-sinh", "cap-the-can-cuoc"):
        path = kb_copy / f"thu-tuc/{name}.md"
        notes = "\n".join(f"- Ghi chú mới số {i} về {name}, đủ dài để thành một đoạn riêng. " * 12 for i in range(4))
        path.write_text(path.read_text(encoding="utf-8") + "\n## Lưu ý\n\n" + notes, encoding="utf-8")
    crashing = CrashingEncoder(encoder)
    with pytest.raises(KeyboardInterrupt):
        build_index(small_index, lambda: crashing, progress=False)
    assert current_version(small_index.index_root) == before
    assert Assistant(small_index, encoder=encoder).load().ask("kết hôn ở đâu").sources[0].id == "dang-ky-ket-hon"
    counting = CountingEncoder(encoder)
    report = build_index(small_index, lambda: counting, progress=False)
    assert report.embedded == len(counting.texts) < len(crashing.texts) + report.embedded  # first batch kept
    assert not list(small_index.index_root.glob(".tmp-*"))  # the half-written folder was cleaned up


def test_running_assistant_switches_to_a_rebuilt_index(small_index, kb_copy, encoder):
    assistant = Assistant(small_index, encoder=encoder).load()
    old = assistant.data.version
    path = kb_copy / "chu-de/mot-cua-lien-thong.md"
    path.write_text(path.read_text(encoding="utf-8") + "\n## Xem kết quả ở đâu\n\nTrên cổng thông tin.\n",
                    encoding="utf-8")
    build_index(small_index, lambda: encoder, progress=False)
    assistant.ask("một cửa là gì")
    assert assistant.data.version != old


def test_index_built_with_another_model_is_refused(small_index, tmp_path):
    root = small_index.index_root
    manifest_path = root / current_version(root) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model"] = "intfloat/another-model"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexUnavailable, match="another-model"):
        open_index(small_index)


def test_no_index_yet_is_a_clear_error(tmp_path, kb_copy):
    cfg = write_config(tmp_path / "empty", [kb_copy])
    with pytest.raises(IndexUnavailable, match="index_builder.py"):
        open_index(cfg)
    assert not (cfg.index_root / CURRENT).exists()


@pytest.mark.parametrize("size", [1, 7, 500])
def test_faiss_exact_search_equals_brute_force_numpy(size):
    rng = np.random.default_rng(size)
    vectors = rng.normal(size=(size, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(20, 384)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    k = min(10, size)
    scores, ids = make_faiss_index(vectors).search(queries, k)
    brute = queries @ vectors.T
    expected_ids = np.argsort(-brute, axis=1)[:, :k]
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected_ids, axis=1), rtol=1e-5, atol=1e-5)


def test_faiss_on_the_built_index_equals_brute_force(small_index, encoder):
    data = open_index(small_index)
    vectors = stored_vectors(data.faiss_index)
    query = encoder.encode(["làm giấy khai sinh cho con"], role="query")
    scores, ids = data.faiss_index.search(query, 5)
    brute = (vectors @ query[0])
    np.testing.assert_array_equal(ids[0], np.argsort(-brute)[:5])
    assert data.chunk_entry[ids[0][0]] == "dang-ky-khai-sinh"


def test_large_bases_switch_to_a_graph_index_that_agrees_with_brute_force(monkeypatch):
    monkeypatch.setattr(index, "EXACT_SEARCH_LIMIT", 100)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(2000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    graph = make_faiss_index(vectors)
    assert type(graph).__name__ == "IndexHNSWFlat"
    np.testing.assert_allclose(stored_vectors(graph), vectors, rtol=1e-6)
    queries = vectors[:50] + 0.05 * rng.normal(size=(50, 64)).astype(np.float32)
    _, ids = graph.search(queries, 1)
    assert (ids[:, 0] == np.arange(50)).mean() >= 0.98  # approximate, but finds the near-duplicates


def test_embedding_in_length_order_keeps_each_vector_with_its_chunk_and_logs_progress(small_cfg, encoder,
                                                                                       monkeypatch):
    # the builder embeds by role, then by length, in batches: more chunks than one batch, lengths and roles mixed
    monkeypatch.setattr(index, "EMBED_BATCH", 4)
    words = "hồ sơ đăng ký khai sinh cho trẻ em tại ủy ban nhân dân cấp xã nơi cư trú của cha mẹ".split()
    chunks = [index.Chunk(f"e{i}", "s", " ".join(words[: 2 + 2 * ((i * 7) % 11)]), "query" if i % 3 == 0 else "passage")
              for i in range(11)]
    lines: list[str] = []
    vectors, embedded = index._embed(small_cfg, chunks, lambda: encoder, False, lines.append)
    assert embedded == 11
    for chunk, vector in zip(chunks, vectors):
        alone = encoder.encode([index.normalize(chunk.text)], role=chunk.role)[0]
        assert float(alone @ vector) > 0.9999, chunk
    # a line for the log (a build run from a script draws no bar), the last one at the end
    assert lines[-1].startswith("Nhúng: 11/11 đoạn (100%"), lines
