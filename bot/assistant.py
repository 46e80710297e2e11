"""The core every channel calls: open the index, answer a question, pick up a rebuilt index."""

from __future__ import annotations

import logging
import threading
import uuid

from .answer import Answer, Conversation, Link, compose_answer
from .config import Config
from .index import IndexData, current_version, open_index
from .retrieval import Retriever

log = logging.getLogger("bot")

ERROR_TEXT = ("Xin lỗi, hệ thống đang gặp sự cố nên chưa trả lời được. Bạn vui lòng thử lại sau, "
              "hoặc gọi {name} {number}.")


class Assistant:
    """Answers questions from the serving index; switches to a rebuilt index between questions."""

    def __init__(self, cfg: Config, encoder=None):
        self.cfg = cfg
        self._encoder = encoder
        self._lock = threading.Lock()
        self.data: IndexData | None = None
        self.retriever: Retriever | None = None

    @property
    def encoder(self):
        """The sentence encoder, loaded on first use."""
        if self._encoder is None:
            from .encoder import load_encoder

            self._encoder = load_encoder(self.cfg)
        return self._encoder

    def load(self) -> Assistant:
        """Open the serving index (raises IndexUnavailable when there is none)."""
        data = open_index(self.cfg)
        retriever = Retriever(data, self.encoder)
        with self._lock:
            old, self.data, self.retriever = self.data, data, retriever
        if old is not None:
            old.db.close()
        return self

    def refresh(self) -> bool:
        """Switch to a newer index version if an admin rebuilt it; True when switched."""
        version = current_version(self.cfg.index_root)
        if self.data is not None and version == self.data.version:
            return False
        if version is None and self.data is not None:
            return False  # keep serving what we have
        self.load()
        return True

    @property
    def default_links(self) -> list[Link]:
        """Official links offered with every answer."""
        links = self.data.links if self.data else []
        return [Link(x["title"], x["url"]) for x in links if x.get("default")]

    def ask(self, question: str, conversation: Conversation | None = None) -> Answer:
        """Answer one question; failures become a polite apology and a logged error id, never a traceback."""
        try:
            self.refresh()
            assert self.data is not None and self.retriever is not None
            result = self.retriever.search(question)
            return compose_answer(result, self.data.entries, self.data.chunk_text, self.default_links,
                                  self.data.hotline, conversation, self.cfg.answer.sources)
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("error %s answering %r", error_id, question[:200])
            hotline = (self.data.hotline if self.data else None) or {"name": "Tổng đài Cổng Dịch vụ công quốc gia",
                                                                     "number": "18001096"}
            text = ERROR_TEXT.format(**hotline) + f" (mã lỗi {error_id})"
            return Answer(question, "error", parts=[("", text)])
