"""How fast, and how exactly, questions are encoded: fp32, bfloat16 (kept) and int8 variants, in one process.

    python -m bench.encoding [--questions 200]

Each variant encodes the same questions (the latency benchmark's, cut as the retriever cuts them) one at a time on
one thread; the variants take turns question by question, so a shared machine's load falls on all of them alike.
Cosine is against the fp32 vector of the same question (the index's passages are always fp32).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
import warnings

import numpy as np


def int8_layers(model, keep=lambda name: True):
    """A copy of the transformer layers with the Linear layers `keep` names in int8 (torch dynamic quantization)."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    layers = model[0].model.encoder
    spec = {name: per_channel_dynamic_qconfig for name, module in layers.named_modules()
            if isinstance(module, torch.nn.Linear) and keep(name)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(layers), spec, dtype=torch.qint8)


def main(argv: list[str] | None = None) -> int:
    """Print a table row per variant: p50, p95, mean and lowest cosine to fp32."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args(argv)
    import torch

    from bench.latency import question_pool
    from bot.config import load_config
    from bot.engine.encoder import SentenceTransformerEncoder, bf16_query_model, prepare_model
    from bot.engine.question import DENSE_CHARS
    from bot.engine.text import clean

    torch.set_num_threads(1)
    cfg = load_config()
    path = prepare_model(cfg)
    if path is None:
        sys.exit("this benchmark needs the default model on the sentence-transformers backend")
    model = SentenceTransformerEncoder(str(path), cfg.model.name, threads=1)._model
    bert = model[0].model
    fp32_layers = bert.encoder
    feed_forward_out = lambda n: n.endswith("output.dense") and ".attention." not in n  # noqa: E731
    variants = {
        "fp32 (the index's own)": (fp32_layers, False),
        "bfloat16 matrix products, autocast": (fp32_layers, True),
        "the same, Linear weights kept in bfloat16 (kept: `[model] bf16_queries`)": (
            bf16_query_model(model)[0].model.encoder, True),
        "int8, every Linear layer": (int8_layers(model), False),
        "int8, all but the feed-forward output": (int8_layers(model, lambda n: not feed_forward_out(n)), False),
        "int8, attention projections and feed-forward input": (int8_layers(
            model, lambda n: "attention.self" in n or "intermediate" in n), False),
        "int8, layers 0–9 of 12": (int8_layers(model, lambda n: int(n.split(".")[1]) < 10), False),
    }
    pool = question_pool() or ["làm căn cước cần giấy tờ gì", "Đăng ký khai sinh cho con ở đâu?"]  # no ../shared
    questions = [clean(q, DENSE_CHARS) for q in pool][: args.questions]

    def encode(text: str, layers, bf16: bool) -> np.ndarray:
        bert.encoder = layers
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            return model.encode([text], prompt_name="query", normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)[0].astype(np.float32)

    for text in questions[:5]:  # warm up every variant
        for layers, bf16 in variants.values():
            encode(text, layers, bf16)
    times: dict[str, list[float]] = {name: [] for name in variants}
    cosines: dict[str, list[float]] = {name: [] for name in variants}
    for text in questions:
        exact = None
        for name, (layers, bf16) in variants.items():
            started = time.perf_counter()
            vector = encode(text, layers, bf16)
            times[name].append(time.perf_counter() - started)
            exact = vector if exact is None else exact
            cosines[name].append(float(vector @ exact))
    bert.encoder = fp32_layers
    print(f"{len(questions)} questions, one thread, variants in turn\n")
    print("| question encoding | p50 | p95 | cosine to fp32, mean / lowest |\n| --- | --- | --- | --- |")
    for name in variants:
        t = np.array(times[name]) * 1000
        print(f"| {name} | {np.median(t):.1f} ms | {np.percentile(t, 95):.1f} ms | "
              f"{np.mean(cosines[name]):.6f} / {np.min(cosines[name]):.6f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
