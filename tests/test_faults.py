"""Faults under the desk: the question log's disk is full or its database locked; nasty input reaches the log.

The bot keeps answering and says so in its log; what was acknowledged (a question id) is stored.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

import pytest

from bot.engine.assistant import Assistant
from bot.engine.index import build_index
from bot.service.desk import Desk
from bot.service.qlog import QuestionLog
from tests.conftest import FIXTURE_KB, write_config
from tests.test_nasty import CORPUS, UNSAFE_CHARS

QUESTION = "lệ phí đăng ký kết hôn"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory, e5_dir, encoder):
    """The small test knowledge base, built once for this module."""
    cfg = write_config(tmp_path_factory.mktemp("faults"), [FIXTURE_KB], e5_dir=e5_dir)
    build_index(cfg, lambda: encoder, progress=False)
    return Assistant(cfg, encoder=encoder).load()


def test_the_nasty_corpus_is_logged_masked_and_clean(assistant, tmp_path):
    log = QuestionLog(tmp_path / "questions.db", b"test-key")
    desk = Desk(assistant, log=log, rate_count=0)
    ids = []
    for i, (_, text) in enumerate(CORPUS):
        for user in (f"user-{i}", "\ud800" + str(i), "'; DROP TABLE questions; --"):
            reply = desk.ask("web", user, text)
            assert reply.question_id is not None
            ids.append(reply.question_id)
    rows = log.questions()
    assert [r["id"] for r in rows] == ids  # every acknowledged question is stored, in order
    for row in rows:
        assert not UNSAFE_CHARS.search(row["question"]) and len(row["question"]) <= 1000
    assert "[email]" in " ".join(r["question"] for r in rows)  # the corpus's address was masked
    assert len({r["user_key"] for r in rows}) == 2 * len(CORPUS) + 1
    desk.close()  # closes the log too


def test_a_full_disk_does_not_stop_answers_and_is_logged(assistant, tmp_path, caplog):
    log = QuestionLog(tmp_path / "questions.db", b"test-key")
    desk = Desk(assistant, log=log, rate_count=0)
    assert desk.ask("web", "a", QUESTION).question_id is not None
    pages = log.db.execute("PRAGMA page_count").fetchone()[0]
    log.db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own 'database or disk is full' (SQLITE_FULL)
    with caplog.at_level(logging.ERROR, logger="bot"):
        for _ in range(40):
            reply = desk.ask("web", "a", f"{QUESTION} " * 60)  # long rows fill the last pages fast
            assert reply.answer.kind == "answer" and reply.answer.entry_id == "dang-ky-ket-hon"
    failed = [r for r in caplog.records if "không ghi được câu hỏi" in r.getMessage()]
    assert failed and "full" in failed[0].getMessage()
    stored = len(log.questions())
    log.db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    reply = desk.ask("web", "a", QUESTION)
    assert reply.question_id is not None and len(log.questions()) == stored + 1
    desk.close()  # closes the log too


def test_a_concurrent_writer_delays_the_log_without_losing_a_question(assistant, tmp_path):
    path = tmp_path / "questions.db"
    log = QuestionLog(path, b"test-key")
    desk = Desk(assistant, log=log, rate_count=0)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")  # e.g. `python -m bot log purge` or a backup, from another process
    released = threading.Timer(1.0, lambda: other.execute("COMMIT"))
    released.start()
    started = time.monotonic()
    reply = desk.ask("web", "a", QUESTION)
    waited = time.monotonic() - started
    released.join()
    other.close()
    assert reply.question_id is not None and waited >= 0.9
    assert log.question(reply.question_id)["question"] == QUESTION
    desk.close()  # closes the log too


def test_a_log_locked_longer_than_its_timeout_still_gets_an_answer(assistant, tmp_path, caplog):
    path = tmp_path / "questions.db"
    log = QuestionLog(path, b"test-key")
    log.db.execute("PRAGMA busy_timeout = 200")
    desk = Desk(assistant, log=log, rate_count=0)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with caplog.at_level(logging.ERROR, logger="bot"):
        reply = desk.ask("web", "a", QUESTION)
    other.execute("ROLLBACK")
    other.close()
    assert reply.answer.entry_id == "dang-ky-ket-hon" and reply.question_id is None  # not acknowledged: not stored
    assert any("locked" in r.getMessage() for r in caplog.records)
    assert desk.ask("web", "a", QUESTION).question_id is not None  # the lock gone, logging resumes
    desk.close()  # closes the log too
