"""The ranking levers of bench/levers.py and the latency benchmark."""

import re

import faiss
import numpy as np
import pytest

from bench import latency
from bench.fit import hit_at_1
from bench.levers import (
    LEAD_IN,
    DenseEvidence,
    curated_name_coverage,
    fit_softmax,
    fit_trees,
    imported_by_length,
    level_agreement,
    question_length,
    question_levels,
    title_extra,
    variant_split,
)
from bot.engine.assistant import Assistant


def test_question_levels_read_the_administrative_level_named():
    assert question_levels("Nộp hồ sơ ở UBND xã hay phường?") == {"xa"}
    assert question_levels("Bảo hiểm xã hội tự nguyện đóng ở đâu?") == set()
    assert question_levels("Sở Tư pháp cấp phiếu lý lịch trong bao lâu?") == {"tinh"}
    assert question_levels("Bộ Tư pháp có cấp giấy phép này không?") == {"bo"}
    assert question_levels("đường bộ bị hỏng thì báo ai") == set()


def test_lead_ins_of_letters_are_dropped():
    assert LEAD_IN.sub("", "Kính gửi Cục Hàng không Việt Nam, công ty tôi muốn hỏi") == "công ty tôi muốn hỏi"
    assert LEAD_IN.sub("", "Đề nghị cho biết hồ sơ gồm những gì?") == "hồ sơ gồm những gì?"
    assert LEAD_IN.sub("", "Xin hỏi: đăng ký kết hôn ở đâu") == "đăng ký kết hôn ở đâu"
    assert LEAD_IN.sub("", "Đăng ký kết hôn ở đâu") == "Đăng ký kết hôn ở đâu"


def test_candidate_features_over_the_shipped_base(shipped):
    r = shipped.retriever
    assert level_agreement(r, "Đăng ký khai sinh ở UBND xã", "dang-ky-khai-sinh") == 1.0
    assert level_agreement(r, "Bộ Ngoại giao có đăng ký khai sinh không", "dang-ky-khai-sinh") == -1.0
    assert level_agreement(r, "đăng ký khai sinh", "dang-ky-khai-sinh") == 0.0
    # "Đăng ký khai sinh (làm giấy khai sinh)": "giay" is not in the question ("lam" is a stopword).
    assert title_extra(r, "đăng ký khai sinh", "dang-ky-khai-sinh") == 1.0
    assert title_extra(r, "đăng ký làm giấy khai sinh", "dang-ky-khai-sinh") == 0.0
    both, entry_only, question_only = (variant_split(i) for i in range(3))
    assert (both(r, "cấp lại thẻ căn cước", "cap-doi-cap-lai-the-can-cuoc"),
            question_only(r, "gia hạn thẻ căn cước", "cap-doi-cap-lai-the-can-cuoc")) == (1.0, 1.0)
    assert entry_only(r, "thẻ căn cước", "cap-doi-cap-lai-the-can-cuoc") >= 1.0


def test_question_length_and_the_curated_entry_levers(shipped):
    r = shipped.retriever
    assert question_length("đăng ký khai sinh") == 0.4
    assert question_length("xin hỏi " * 50) == 4.0
    assert imported_by_length(r, "đăng ký khai sinh", "dang-ky-khai-sinh") == 0.0  # curated, not imported
    assert curated_name_coverage(r, "đăng ký khai sinh ở đâu", "dang-ky-khai-sinh") >= 0.5
    assert curated_name_coverage(r, "cấp phép xây dựng nhà ở", "dang-ky-khai-sinh") == 0.0


def test_dense_evidence_scores_agree_with_the_retriever(shipped):
    r = shipped.retriever
    evidence = DenseEvidence(r)
    assert evidence.hub.shape == (len(r.vectors),) and 0 < evidence.hub.min() <= evidence.hub.max() <= 1.0001
    question = "làm giấy khai sinh cho con cần gì"
    hit = next(h for h in r.candidates(question).hits if h.entry_id == "dang-ky-khai-sinh")
    # With no hubness weight the corrected score is the retriever's own best passage score.
    assert evidence.hub_corrected(0.0)(r, question, hit.entry_id) == pytest.approx(hit.features[1], abs=1e-5)
    assert evidence.hub_corrected(1.0)(r, question, hit.entry_id) < hit.features[1]
    assert evidence.top2_mean(r, question, hit.entry_id) <= hit.features[1] + 1e-6
    assert evidence.asked_section(r, question, hit.entry_id) <= hit.features[1] + 1e-6  # one of the passages
    letter = "Kính gửi Sở Tư pháp, tôi mới sinh con ở bệnh viện tỉnh. Đăng ký khai sinh cho con ở đâu?"
    assert evidence.last_sentence(r, letter, hit.entry_id) > 0.8


def test_trees_learn_which_candidate_is_relevant():
    rng = np.random.default_rng(1)
    groups = []
    for _ in range(80):
        x = rng.normal(size=(8, 3))
        y = np.zeros(8, dtype=bool)
        y[rng.integers(8)] = True
        x[y, 1] += 3.0  # the relevant candidate stands out on feature 1 only
        groups.append((x, y))
    model = fit_trees([groups[:60]], (1.0,))
    held = [(model.predict_proba(x)[:, 1][:, None], y) for x, y in groups[60:]]
    assert hit_at_1(held, np.ones(1)) >= 0.8  # chance is 0.125; the best possible here is 0.9


def test_softmax_fit_puts_the_relevant_candidate_first():
    rng = np.random.default_rng(0)
    groups = []
    for _ in range(40):
        x = rng.normal(size=(8, 3))
        y = np.zeros(8, dtype=bool)
        y[int(np.argmax(x[:, 0] + 2 * x[:, 2]))] = True  # relevance follows features 0 and 2, not 1
        groups.append((x, y))
    w = fit_softmax([groups[:20]], (1.0,))
    assert w[2] > w[0] > abs(w[1])
    assert hit_at_1(groups[20:], w) >= 0.9


def test_dense_search_runs_on_one_thread(small_index, encoder):
    Assistant(small_index, encoder=encoder).load()
    assert faiss.omp_get_max_threads() == 1


def test_latency_benchmark_prints_percentiles(small_index, monkeypatch, capsys):
    monkeypatch.setenv("CCHC_CONFIG", str(small_index.base / "config.toml"))
    assert latency.main(["--questions", "5", "--split"]) == 0
    out = capsys.readouterr().out
    figures = {line.split(":")[0].strip(): [float(v) for v in re.findall(r"p(?:50|95) ([0-9.]+) ms", line)]
               for line in out.splitlines()}
    p50, p95 = figures[next(k for k in figures if k.startswith("answer latency"))]
    assert 0 < p50 <= p95, out
    encoding, search = figures["encoding the question"], figures["search (with encoding)"]
    assert 0 < encoding[0] <= search[0] <= p95 and 0 < figures["FAISS"][0] <= search[0], out


def test_encoding_benchmark_compares_the_variants_against_fp32(e5_dir, capsys):
    from bench import encoding

    assert encoding.main(["--questions", "3"]) == 0
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and " ms |" in line}
    assert len(rows) == 7
    exact = rows["fp32 (the index's own)"]
    assert exact.endswith("| 1.000000 / 1.000000 |")
    for name, row in rows.items():
        if "bfloat16" in name:
            assert float(row.split(" / ")[-1].strip(" |")) >= 0.9999, row
