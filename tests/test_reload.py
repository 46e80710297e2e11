"""Hot reload: a desk answering a stream of questions while index_builder.py rebuilds loses none of them and
answers from the new index afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from bot.config import ROOT

NEW_FAQ = """---
id: hoi-dap-nuoi-chim-yen
loai: hoi-dap
cau_hoi:
  - Xây nhà nuôi chim yến có cần xin phép không?
  - nuoi chim yen can giay phep gi
lien_quan: [mot-cua-lien-thong]
---

Nhà nuôi chim yến phải đăng ký với Ủy ban nhân dân cấp xã nơi đặt nhà yến trước khi xây dựng.
"""
NEW_QUESTION = "nuôi chim yến có cần xin phép không"
STREAM = ["đăng ký khai sinh cần giấy tờ gì", "lệ phí đăng ký kết hôn", NEW_QUESTION, "làm thẻ căn cước ở đâu",
          "chứng minh nhân dân 9 số còn dùng được không"]


def test_rebuild_during_a_stream_of_questions(small_index, encoder, kb_copy, monkeypatch):
    from bot.engine.assistant import Assistant
    from bot.service.desk import open_desk

    monkeypatch.setenv("LOG_HASH_KEY", "test key")
    assistant = Assistant(small_index, encoder=encoder).load()
    desk = open_desk(small_index, assistant)
    old_version = assistant.data.version
    before = desk.ask("web", "probe", NEW_QUESTION).answer
    assert before.entry_id != "hoi-dap-nuoi-chim-yen"

    (kb_copy / "hoi-dap" / "hoi-dap-nuoi-chim-yen.md").write_text(NEW_FAQ, encoding="utf-8")
    done = threading.Event()
    replies: list[tuple[int, str, str | None, str, bool]] = []  # (n, kind, entry, version, build finished before)

    def stream():
        n = 0
        finished_seen = 0
        while finished_seen < len(STREAM):  # after the build: one more round of every question
            finished = done.is_set()
            reply = desk.ask("web", f"citizen-{n}", STREAM[n % len(STREAM)])
            replies.append((n, reply.answer.kind, reply.answer.entry_id, assistant.data.version, finished))
            finished_seen += finished
            n += 1

    worker = threading.Thread(target=stream)
    worker.start()
    env = {**os.environ, "CCHC_MODEL_THREADS": "1", "CCHC_CONFIG": str(small_index.base / "config.toml")}
    try:
        build = subprocess.run([sys.executable, str(ROOT / "index_builder.py"), "--quiet"], env=env, cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    finally:
        done.set()
        worker.join(timeout=600)
    assert build.returncode == 0, build.stderr
    desk.close()

    asked = len(replies)
    during = [r for r in replies if not r[4]]
    after = [r for r in replies if r[4]]
    assert len(during) >= len(STREAM), "the stream should overlap the build"
    assert [r[0] for r in replies] == list(range(asked))
    assert all(kind in ("answer", "decline") for _, kind, *_ in replies), {r[1] for r in replies}
    from bot.service.qlog import QuestionLog

    log = QuestionLog(small_index.data_dir / "log" / "questions.db", b"unused")
    try:
        assert len(log.questions()) == asked + 1  # every question answered and logged, the probe too
    finally:
        log.close()
    assert all(version != old_version for _, _, _, version, _ in after)
    assert [entry for n, _, entry, _, _ in after if STREAM[n % len(STREAM)] == NEW_QUESTION] == ["hoi-dap-nuoi-chim-yen"]
    answered_before = {STREAM[n % len(STREAM)]: entry for n, kind, entry, version, _ in during if version == old_version}
    answered_after = {STREAM[n % len(STREAM)]: entry for n, kind, entry, _, _ in after}
    for question in STREAM:  # the other questions are answered alike from both indexes
        if question != NEW_QUESTION and question in answered_before:
            assert answered_after[question] == answered_before[question]
