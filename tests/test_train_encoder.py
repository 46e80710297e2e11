"""The encoder's training command: its data rules, and a tiny real run whose delta, applied to the base, gives the
trained model's vectors."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bench import train_encoder as T
from bot.engine.modelprep import apply_delta, read_delta
from tests.conftest import SHARED, needs_shared


@needs_shared
def test_training_data_never_holds_the_held_out_rows_or_portal_dev():
    train, val, held = T.portal_pairs(T.FAQ_TRAIN, random.Random(0))
    assert held == 402 and len(train) + len(val) == 2011 - held
    held_questions, dev = set(), set()
    import csv

    csv.field_size_limit(1 << 30)
    with T.FAQ_TRAIN.open(encoding="utf-8") as f:
        held_questions = {r["question"].strip() for r in csv.DictReader(f, delimiter="\t") if T.held_out(int(r["faq_id"]))}
    for line in (SHARED / "eval" / "portal-dev.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            dev.add(line.split("\t")[0].strip())
    used = {p.query for p in train + val}
    assert not used & held_questions and not used & dev
    assert all(p.negative != p.positive for p in train)  # every pair has a hard negative of its own


@needs_shared
def test_a_tiny_run_writes_a_compact_delta_that_reproduces_the_trained_vectors(tmp_path, e5_dir, encoder):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "out"
    assert T.main(["--limit", "8", "--batch-size", "4", "--steps", "2", "--max-len", "32", "--no-curated",
                   "--lr", "1e-3", "--log-every", "1", "--base", str(e5_dir), "--out", str(out)]) == 0
    delta = out / "seed1" / "delta.safetensors"
    trained = np.load(out / "seed1" / "probe.npy")
    diffs, meta = read_delta(delta)
    assert delta.stat().st_size <= 25e6 and not any("word_embeddings" in name for name in diffs)
    assert meta["seed"] == "1" and meta["step"] == "2"

    adapted = apply_delta(e5_dir, delta, tmp_path / "adapted")
    applied = SentenceTransformer(str(adapted), device="cpu").encode(list(T.PROBES), normalize_embeddings=True)
    base = encoder.encode([p.split(": ", 1)[1] for p in T.PROBES[:2]], role="query")  # the base model, as served
    base = np.vstack([base, encoder.encode([T.PROBES[2].split(": ", 1)[1]], role="passage")])
    moved = 1 - (base * trained).sum(axis=1)  # how far training moved the vectors
    error = 1 - (applied * trained).sum(axis=1)  # how far the int8 delta is from the trained model
    assert moved.min() > 1e-3 and error.max() < 1e-4 and error.max() < moved.min() / 20


def test_a_delta_for_another_base_is_refused(tmp_path, e5_dir):
    from safetensors.numpy import save_file

    delta = tmp_path / "delta.safetensors"
    save_file({"pooler.dense.bias.d": np.zeros(384, dtype=np.float16)}, str(delta), metadata={"base": "other/1"})
    with pytest.raises(ValueError, match="trained on base other/1"):
        apply_delta(e5_dir, delta, tmp_path / "adapted")
