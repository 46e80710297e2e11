"""Ranking features by name and their weights as data (bot/engine/features.py, bot/engine/weights.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bot.engine import features as F
from bot.engine.question import analyse


def test_every_weighted_name_is_a_feature_and_both_profiles_load():
    data = json.loads(F.WEIGHTS_FILE.read_text(encoding="utf-8"))
    assert set(data) == {"curated", "national"}
    for profile in data:
        rank, conf = F.load_weights(profile)
        assert len(rank) == len(F.FEATURES) and len(conf) == len(F.FEATURES) + 1
        assert rank[F.NAMES.index("dense")] == 1.0  # the scale of the rank score
        assert conf[-1] == data[profile]["confidence"]["bias"]


def test_weights_are_read_by_name_not_position(tmp_path):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"p": {"rank": {"variant": 2.5, "dense": 1}, "confidence": {"phrase": 3, "bias": -1}}}))
    rank, conf = F.load_weights("p", path)
    assert rank[F.NAMES.index("variant")] == 2.5 and rank[F.NAMES.index("dense")] == 1.0
    assert sum(rank) == 3.5  # a feature the file does not name weighs nothing
    assert conf[F.NAMES.index("phrase")] == 3.0 and conf[-1] == -1.0


def test_an_unknown_feature_or_profile_is_refused_with_its_name(tmp_path):
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"p": {"rank": {"densse": 1}}}))
    with pytest.raises(F.WeightsError, match="densse"):
        F.load_weights("p", path)
    with pytest.raises(F.WeightsError, match="no weights for profile 'q'"):
        F.load_weights("q", path)


def test_the_file_written_by_bench_fit_reads_back_the_same_weights(tmp_path):
    profiles = {name: F.load_weights(name) for name in ("curated", "national")}
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(F.weights_data(profiles)))  # type: ignore[arg-type]
    for name, weights in profiles.items():
        assert F.load_weights(name, path) == weights


def test_features_of_a_candidate_by_their_functions():
    from bot.engine.index import Record

    q = analyse("cấp lại giấy phép lái xe")
    record = Record("x", "procedure", "", {"tieu_de": "Cấp giấy phép lái xe", "nhap_tu": "cong-dvc"}, "", ())
    ids = np.array([1, 2, 3], dtype=np.int32)
    terms = F.Terms(own=ids, own_weights=np.array([1.0, 1.0, 2.0]), phrases=np.array([7], dtype=np.int32),
                    asked=np.array([1, 2, 3, 7], dtype=np.int32))
    e = F.Evidence(question=q, terms=terms, record=record, dense_name=0.8, dense_passage=0.7, lexical=0.5,
                   lexicon=np.array([1, 3], dtype=np.int32), name_lexicon=np.array([3], dtype=np.int32),
                   title_words=np.array([1, 9], dtype=np.int32), title_word_idf=np.array([1.0, 3.0]),
                   title_pairs=np.zeros(0, dtype=np.int32), folded_title="cap giay phep lai xe")
    got = dict(zip(F.NAMES, F.compute(e)))
    assert got["dense"] == 0.8 and got["dense_passage"] == 0.7 and got["dense_name"] == 0.8
    assert got["coverage"] == pytest.approx(3 / 4) and got["name_coverage"] == pytest.approx(2 / 4)
    assert got["phrase"] == 0.0 and got["lexical"] == 0.5 and got["faq"] == 0.0
    assert got["name_in_question"] == pytest.approx(1 / 4) and got["name_phrase_in_question"] == 0.0
    assert got["imported"] == 1.0
    assert got["variant"] == -0.5  # the question asks for "cấp lại", the name does not say it
