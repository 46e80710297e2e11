"""The core every channel calls: open the index, answer a question, pick up a rebuilt index."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from bot.config import Config

from .answer import Answer, Conversation, Link, compose_answer
from .batching import QueryBatcher
from .index import IndexData, IndexUnavailable, current_version, named_version, open_index, versions
from .phrases import DEFAULT_HOTLINE, apology, error_id
from .retrieval import Retriever
from .text import clean

log = logging.getLogger("bot")


class Assistant:
    """Answers questions from the serving index; switches to a rebuilt index between questions."""

    def __init__(self, cfg: Config, encoder=None, batched: bool = True):
        """`batched`: questions answered side by side share encoder batches when `[answer]` says so; False for one
        question at a time (the command line, staff tools)."""
        self.cfg = cfg
        self._batched = batched
        self._encoder = encoder
        self._lock = threading.Lock()
        self.data: IndexData | None = None
        self.retriever: Retriever | None = None
        self._broken: str | None = None  # a version that failed to open; not retried
        self._batcher: QueryBatcher | None = None
        self._encoder_given = encoder is not None
        self.encoder_process: Any = None  # EncoderProcess, when questions are encoded in a process of their own

    @property
    def batcher(self) -> QueryBatcher | None:
        """Questions answered side by side share encoder batches (`[answer] workers` and `batch_size` above 1)."""
        a = self.cfg.answer
        if self._batcher is None and self._batched and a.workers > 1 and a.batch_size > 1:
            if a.encoder_process and not self._encoder_given:  # an encoder handed in is used in this process
                from .encoder_process import EncoderProcess

                self.encoder_process = EncoderProcess(self.cfg)
                encode = self.encoder_process.encode
            else:
                encoder = self.encoder

                def encode(texts):
                    return encoder.encode(texts, role="query", batch_size=len(texts))
            self._batcher = QueryBatcher(encode, window_s=a.batch_window_ms / 1000, max_batch=a.batch_size)
        return self._batcher

    def close(self) -> None:
        """Stop the batching thread (questions already queued are answered first) and the encoder process."""
        if self._batcher is not None:
            self._batcher.close()
        if self.encoder_process is not None:
            self.encoder_process.close()

    @property
    def encoder(self):
        """The sentence encoder, loaded on first use."""
        if self._encoder is None:
            from .encoder import load_encoder

            self._encoder = load_encoder(self.cfg, serving=True)
        return self._encoder

    def load(self) -> Assistant:
        """Open the serving index (raises IndexUnavailable when there is none).

        A serving index that is damaged or built for another encoder is logged, naming the file, and the newest
        intact version still on disk serves instead, so a broken build or disk never silences the bot.
        """
        try:
            return self._switch(open_index(self.cfg))
        except IndexUnavailable as broken:
            current = current_version(self.cfg.index_root)
            for version in versions(self.cfg.index_root):
                if version == current:
                    continue
                try:
                    self._switch(open_index(self.cfg, version))
                except IndexUnavailable:
                    continue
                log.error("%s — đang phục vụ bản trước %s", broken, version)
                self._broken = current
                return self
            raise

    def _switch(self, data: IndexData) -> Assistant:
        dim = getattr(self.encoder, "dim", None)
        if dim is not None and dim != data.manifest.get("dim"):
            data.db.close()
            raise IndexUnavailable(
                f"chỉ mục {data.version} có vectơ cỡ {data.manifest.get('dim')} nhưng mô hình "
                f"{getattr(self.encoder, 'model_id', '')} cho vectơ cỡ {dim}: chạy `python index_builder.py --force`"
            )
        try:
            retriever = Retriever(data, self.encoder, batcher=self.batcher)
        except Exception as e:
            data.db.close()
            raise IndexUnavailable(f"chỉ mục {data.version} không dùng được ({e.__class__.__name__}: {e})") from e
        with self._lock:
            old, self.data, self.retriever = self.data, data, retriever
        if old is not None:
            old.db.close()
        return self

    def refresh(self) -> bool:
        """Switch to a newer index version if an admin rebuilt it; True when switched.

        A new version that cannot be opened is reported once and the version in use keeps serving.
        """
        version = current_version(self.cfg.index_root)
        if self.data is not None and version is not None and version in (self.data.version, self._broken):
            return False
        if version is None and self.data is not None:  # keep serving what we have
            named = named_version(self.cfg.index_root)
            if named and named not in (self.data.version, self._broken):
                self._broken = named
                log.error("%s: chỉ mục %s không đầy đủ (thiếu manifest.json) — vẫn phục vụ chỉ mục %s",
                          self.cfg.index_root / named, named, self.data.version)
            return False
        if self.data is None:
            self.load()
            return True
        try:
            self._switch(open_index(self.cfg))
        except IndexUnavailable as e:
            self._broken = version
            log.error("%s — vẫn phục vụ chỉ mục %s", e, self.data.version)
            return False
        return True

    @property
    def default_links(self) -> list[Link]:
        """Official links offered with every answer."""
        links = self.data.links if self.data else []
        return [Link(x["title"], x["url"]) for x in links if x.get("default")]

    @property
    def hotline(self) -> Mapping[str, str]:
        """The official hotline the serving knowledge base names, else the national portal's."""
        return (self.data.hotline if self.data else None) or DEFAULT_HOTLINE

    def ask(self, question: str, conversation: Conversation | None = None) -> Answer:
        """Answer one question; failures become a polite apology and a logged error id, never a traceback."""
        batcher = self.batcher
        try:
            self.refresh()
            assert self.data is not None and self.retriever is not None
            with batcher.answering() if batcher is not None else nullcontext():
                result = self.retriever.search(self.retriever.analyse(question))  # analysed once, read by both
            return compose_answer(result, self.data.entries, self.data.chunk_text, self.default_links,
                                  self.data.hotline, conversation, self.cfg.answer.sources)
        except Exception:
            error = error_id()
            from .privacy import mask  # personal data stays out of the error log, as out of the question log

            log.exception("error %s answering %r", error, mask(clean(question or "", limit=200)))
            return Answer(clean(question or ""), "error", parts=[("", apology(self.hotline, error))])
