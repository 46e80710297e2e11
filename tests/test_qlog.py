"""The question log: masking, pseudonymous user keys, feedback, migrations, WAL, purge, the desk hook."""

from __future__ import annotations

import re
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ConfigError, load_config
from bot.engine.answer import Answer, Source
from bot.service.qlog import MIGRATIONS, QuestionLog, SchemaError, hash_key, mask, migrate

SECRET = b"k" * 32


def answer(kind: str = "answer", confidence: float = 0.9, entry: str | None = "thu-tuc/khai-sinh") -> Answer:
    sources = [Source(entry, "Đăng ký khai sinh", "procedure", "2026-01-01", "https://x", 0.9, [])] if entry else []
    return Answer("q", kind, title="Đăng ký khai sinh" if entry else "", sources=sources, confidence=confidence,
                  entry_id=entry)


@pytest.fixture
def qlog(tmp_path):
    log = QuestionLog(tmp_path / "log" / "questions.db", SECRET)
    yield log
    log.close()


@pytest.mark.parametrize("text, gone, placeholder", [
    ("CCCD của tôi là 001099012345", "001099012345", "[số CCCD]"),
    ("số định danh 001 099 012 345 bị sai", "001 099 012 345", "[số CCCD]"),
    ("CMND cũ 123456789 còn dùng được không", "123456789", "[số CMND]"),
    ("gọi 0912345678 giúp tôi", "0912345678", "[số điện thoại]"),
    ("sđt 0912.345.678", "0912.345.678", "[số điện thoại]"),
    ("sđt 0912 345 678", "0912 345 678", "[số điện thoại]"),
    ("sđt 0912-345-678", "0912-345-678", "[số điện thoại]"),
    ("gọi +84 912 345 678 nhé", "912 345 678", "[số điện thoại]"),
    ("gọi (+84) 912.345.678", "912.345.678", "[số điện thoại]"),
    ("gọi +84912345678", "912345678", "[số điện thoại]"),
    ("gọi 0084912345678", "912345678", "[số điện thoại]"),
    ("gọi 84912345678", "84912345678", "[số điện thoại]"),
    ("máy bàn (028) 3822 1234", "3822 1234", "[số điện thoại]"),
    ("mail nguyen.van.a+cchc@gmail.com.vn nhé", "nguyen.van.a", "[email]"),
    ("hồ sơ 000.00.15.H12-240101-0001 đến đâu rồi", "H12-240101-0001", "[mã hồ sơ]"),
    ("hồ sơ H12.34-240101-0001 đến đâu rồi", "240101-0001", "[mã hồ sơ]"),
])
def test_mask_removes_personal_data(text, gone, placeholder):
    masked = mask(text)
    assert gone not in masked and placeholder in masked


@pytest.mark.parametrize("text", [
    "thủ tục 1.001193 năm 2024 thế nào",
    "Nghị định 123/2024/NĐ-CP quy định gì",
    "lệ phí 100.000.000 đồng hay 50.000 đồng",
    "hẹn ngày 22/11/2026 lúc 8:30",
    "làm thẻ căn cước cho trẻ dưới 14 tuổi",
])
def test_mask_keeps_ordinary_numbers(text):
    assert mask(text) == text


def test_dossier_codes_kept_only_when_configured():
    text = "hồ sơ 000.00.15.H12-240101-0001 của tôi, sđt 0912345678"
    assert mask(text, keep_dossier_codes=True) == "hồ sơ 000.00.15.H12-240101-0001 của tôi, sđt [số điện thoại]"
    assert "H12" not in mask(text)


SEPARATOR = st.sampled_from(["", " ", ".", "-"])
WORDS = st.lists(st.sampled_from("tôi cần làm thủ tục số của là ở đâu , : gì ạ".split()), max_size=6).map(" ".join)


def _spaced(digits: str, groups: list[int], sep: str) -> str:
    out, at = [], 0
    for size in groups:
        out.append(digits[at:at + size])
        at += size
    return sep.join(out)


@settings(max_examples=150, deadline=None)
@given(st.text("0123456789", min_size=11, max_size=11), st.sampled_from([[12], [3, 3, 3, 3], [4, 4, 4], [6, 6]]),
       SEPARATOR, WORDS, WORDS)
def test_no_twelve_digit_id_survives(rest, groups, sep, before, after):
    digits = "0" + rest
    text = f"{before} {_spaced(digits, groups, sep)} {after}"
    assert digits not in re.sub(r"\D", "", mask(text))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from("35789"), st.text("0123456789", min_size=8, max_size=8),
       st.sampled_from(["0", "+84", "+84 ", "(+84) ", "0084", "84"]), st.sampled_from([[9], [2, 3, 4], [3, 3, 3]]),
       SEPARATOR, WORDS, WORDS)
def test_no_mobile_number_survives(first, rest, prefix, groups, sep, before, after):
    subscriber = first + rest
    text = f"{before} {prefix}{_spaced(subscriber, groups, sep)} {after}"
    assert subscriber not in re.sub(r"\D", "", mask(text))


def test_stored_question_has_no_id_or_phone(qlog):
    question = "Tôi mất CCCD số 079203004567, liên hệ 0987 654 321 hoặc +84 912.345.678 để làm lại"
    qid = qlog.record(channel="telegram", user="12345", question=question, answer=answer(), latency_ms=12.3)
    raw = sqlite3.connect(qlog.path)
    dump = "\n".join(raw.iterdump())
    raw.close()
    for secret in ("079203004567", "0987 654 321", "912.345.678", "12345"):
        assert secret not in dump
    row = qlog.question(qid)
    assert row["question"] == ("Tôi mất CCCD số [số CCCD], liên hệ [số điện thoại] hoặc [số điện thoại] "
                               "để làm lại")
    assert row["folded"].startswith("toi mat cccd so")
    assert row["channel"] == "telegram" and row["kind"] == "answer" and row["declined"] == 0
    assert row["entry_id"] == "thu-tuc/khai-sinh" and row["top_entries"] == '["thu-tuc/khai-sinh"]'
    assert row["latency_ms"] == 12.3 and row["feedback"] is None


def test_user_key_is_keyed_stable_and_per_channel(tmp_path):
    a = QuestionLog(tmp_path / "a.db", SECRET)
    b = QuestionLog(tmp_path / "b.db", b"another secret")
    try:
        key = a.user_key("telegram", "12345")
        assert re.fullmatch(r"[0-9a-f]{32}", key) and "12345" not in key
        assert key == a.user_key("telegram", "12345")
        assert key != a.user_key("zalo", "12345") and key != a.user_key("telegram", "12346")
        assert key != b.user_key("telegram", "12345")  # without the secret, a known id cannot be looked up
    finally:
        a.close()
        b.close()


def test_hash_key_from_env_else_generated_once_private(tmp_path):
    assert hash_key(tmp_path, {"LOG_HASH_KEY": "from env"}) == b"from env"
    first = hash_key(tmp_path, {})
    path = tmp_path / "secrets" / "log.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) == 64
    assert hash_key(tmp_path, {}) == first


def test_feedback(qlog):
    qid = qlog.record(channel="web", user="u", question="lệ phí khai sinh", answer=answer(), latency_ms=5)
    assert qlog.feedback(qid, -1) is True
    assert qlog.question(qid)["feedback"] == -1 and qlog.question(qid)["feedback_at"]
    assert qlog.feedback(qid, 1) is True and qlog.question(qid)["feedback"] == 1
    assert qlog.feedback(qid + 1, 1) is False
    assert qlog.feedback(qid, 5) is False and qlog.feedback("abc", 1) is False  # type: ignore[arg-type]


def test_wal_and_threads(qlog):
    assert qlog.db.journal_mode == "wal"
    ids: list[int] = []

    def writer(n):
        for i in range(20):
            ids.append(qlog.record(channel="web", user=str(n), question=f"câu {i}", answer=answer(), latency_ms=1))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 80 and len(qlog.questions()) == 80


def test_migration_keeps_every_row(tmp_path):
    path = tmp_path / "questions.db"
    old = sqlite_utils.Database(sqlite3.connect(str(path), isolation_level=None))
    assert migrate(old, MIGRATIONS[:1]) == 1  # a log written by the first released schema
    old["questions"].insert_all([{"asked_at": "2026-11-01 10:00:00", "channel": "telegram", "user_key": "k",
                                  "question": f"câu {i}", "folded": f"cau {i}", "kind": "decline", "declined": 1,
                                  "confidence": 0.1, "latency_ms": 3.0} for i in range(50)])
    old.close()
    log = QuestionLog(path, SECRET)
    try:
        assert log.version == len(MIGRATIONS)
        assert [r["question"] for r in log.questions()] == [f"câu {i}" for i in range(50)]
        assert "tickets" in log.db.table_names()
        log.record(channel="web", user="u", question="mới", answer=answer(), latency_ms=1)
        assert len(log.questions()) == 51
    finally:
        log.close()
    again = QuestionLog(path, SECRET)  # reopening is a no-op
    assert len(again.questions()) == 51
    again.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "questions.db"
    QuestionLog(path, SECRET).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(SchemaError, match="newer than this bot"):
        QuestionLog(path, SECRET)


def test_purge_deletes_only_old_questions(tmp_path):
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    moment = [now - timedelta(days=200)]
    log = QuestionLog(tmp_path / "q.db", SECRET, clock=lambda: moment[0])
    try:
        for days in (200, 181, 179, 1):
            moment[0] = now - timedelta(days=days)
            log.record(channel="web", user="u", question=f"{days} ngày trước", answer=answer(), latency_ms=1)
        moment[0] = now
        assert log.purge(180)["questions"] == 2
        assert [r["question"] for r in log.questions()] == ["179 ngày trước", "1 ngày trước"]
    finally:
        log.close()


def test_log_settings_booleans(tmp_path):
    (tmp_path / "config.toml").write_text("[log]\nenabled = false\nkeep_dossier_codes = true\n", encoding="utf-8")
    cfg = load_config(tmp_path / "config.toml", env={})
    assert cfg.log.enabled is False and cfg.log.keep_dossier_codes is True
    assert load_config(tmp_path / "config.toml", env={"CCHC_LOG_ENABLED": "yes"}).log.enabled is True
    with pytest.raises(ConfigError, match=r"\[log\] enabled must be true or false"):
        load_config(tmp_path / "config.toml", env={"CCHC_LOG_ENABLED": "maybe"})


def test_open_desk_logs_masked_questions(small_index, encoder, monkeypatch):
    from bot.engine.assistant import Assistant
    from bot.service.desk import open_desk

    monkeypatch.delenv("LOG_HASH_KEY", raising=False)
    assistant = Assistant(small_index, encoder=encoder).load()
    desk = open_desk(small_index, assistant)
    try:
        reply = desk.ask("telegram", "987654321", "đăng ký khai sinh cần giấy tờ gì? CCCD 001099012345, sđt 0912345678")
        assert reply.question_id is not None
        assert desk.feedback(reply.question_id, -1, channel="telegram", user="987654321") is True
        assert desk.feedback(reply.question_id, 1, channel="telegram", user="123") is False  # not the asker
        assert desk.feedback(reply.question_id, 1, channel="web", user="987654321") is False  # not its channel
        row = desk.log.question(reply.question_id)  # type: ignore[union-attr]
        assert "001099012345" not in row["question"] and "0912345678" not in row["question"]
        assert row["feedback"] == -1 and row["kind"] == reply.answer.kind
        assert (small_index.data_dir / "log" / "questions.db").exists()
        assert (small_index.data_dir / "secrets" / "log.key").exists()
    finally:
        desk.close()
    monkeypatch.setenv("CCHC_LOG_ENABLED", "false")
    off = open_desk(load_config(small_index.base / "config.toml"), assistant)
    assert off.log is None and off.ask("web", "u", "lệ phí khai sinh").question_id is None
    off.close()
