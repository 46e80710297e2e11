"""Review: unanswered and 👎 questions grouped by similarity; FAQ drafts that, once filled, answer them."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, datetime

from bot.config import ROOT
from bot.engine.knowledge import load_knowledge
from bot.service.qlog import QuestionLog
from bot.staff.review import _bare, _key, group, needs_review, prepare_for
from bot.staff.sample import MISSING, faq_questions, generate_sample

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def _topic(question: str) -> str | None:
    key = _key(_bare(question))
    for topic, variants in MISSING.items():
        if any(key == _key(v) for v in variants):
            return topic
    return None


def test_groups_a_generated_log(tmp_path, shipped):
    log = QuestionLog(tmp_path / "q.db", b"s")
    try:
        generate_sample(log, faq_questions(load_knowledge([ROOT / "knowledge"])), days=30, now=NOW)
        rows = log.questions()
    finally:
        log.close()
    todo = [r for r in rows if needs_review(r)]
    truth = {r["id"]: _topic(r["question"]) or r["entry_id"] for r in todo}
    assert all(truth.values())
    clusters = group(rows, shipped.encoder, prepare=prepare_for(shipped))
    assert sum(c.count for c in clusters) == len(todo)
    assert sorted(i for c in clusters for i in c.ids) == sorted(truth)
    # Pure groups: a group holds one topic (or 👎 answers of one entry), whatever the wording or diacritics.
    pure = sum(Counter(truth[i] for i in c.ids).most_common(1)[0][1] for c in clusters)
    assert pure / len(todo) >= 0.97
    # Few groups per topic: every missing topic in at most two groups, most of them in one.
    whole = 0
    for topic in MISSING:
        sizes = sorted((sum(truth[i] == topic for i in c.ids) for c in clusters), reverse=True)
        assert sizes[0] + sizes[1] == sum(sizes), (topic, sizes[:4])
        whole += sizes[1] == 0
    assert whole >= 3
    assert len(clusters) <= 1.25 * len(set(truth.values()))
    top = clusters[0]
    assert top.count >= clusters[-1].count and top.declined + top.thumbs_down >= top.count
    assert top.questions[0][0] == top.example and len(top.questions) > 1


DRAFT_ANSWER = "Nhà nuôi chim yến phải được Ủy ban nhân dân cấp xã cho phép trước khi xây dựng."
YEN = ["nuôi chim yến có cần xin phép không", "Nuôi chim yến có cần xin phép KHÔNG?", "nuôi chim yến cần xin giấy phép gì"]


def test_draft_filled_moved_and_rebuilt_answers_the_question(small_index, encoder, kb_copy, tmp_path, monkeypatch,
                                                             capsys):
    from bot.cli import main
    from bot.engine.assistant import Assistant
    from bot.engine.index import build_index
    from bot.service.desk import open_desk

    monkeypatch.setenv("LOG_HASH_KEY", "k")
    assistant = Assistant(small_index, encoder=encoder).load()
    desk = open_desk(small_index, assistant)
    try:
        for n, question in enumerate(YEN * 2):
            assert desk.ask("zalo", f"u{n}", question).answer.kind == "decline"
        desk.ask("zalo", "u9", "đăng ký khai sinh cần giấy tờ gì")
    finally:
        desk.close()

    drafts = tmp_path / "drafts"
    assert main(["--config", str(small_index.base / "config.toml"), "review", "--export", str(drafts)]) == 0
    out = capsys.readouterr().out
    assert "1 nhóm" in out and "6 lượt" in out and "Đã viết 1 bản nháp" in out, out
    [draft] = list(drafts.glob("*.md"))
    text = draft.read_text(encoding="utf-8")
    assert draft.name.startswith("hoi-dap-") and "loai: hoi-dap" in text
    assert YEN[0] in text and YEN[2] in text and YEN[1] not in text  # one line per wording, whatever its case

    target = kb_copy / "hoi-dap" / draft.name
    shutil.copy(draft, target)
    problems = [str(p) for p in load_knowledge([kb_copy]).errors]
    assert any("chưa có câu trả lời" in p for p in problems), problems  # an unfilled draft cannot go live
    target.write_text(text + DRAFT_ANSWER + "\n", encoding="utf-8")
    assert load_knowledge([kb_copy]).errors == []
    build_index(small_index, lambda: encoder, progress=False)
    answers = [assistant.ask(q) for q in YEN]
    assert [a.entry_id for a in answers] == [draft.stem] * len(YEN)
    assert all(DRAFT_ANSWER in " ".join(t for _, t in a.parts) for a in answers)


def test_review_of_an_empty_log(small_index, capsys):
    from bot.cli import main

    log = QuestionLog.open(small_index, env={"LOG_HASH_KEY": "k"})
    log.close()
    assert main(["--config", str(small_index.base / "config.toml"), "review"]) == 0
    assert "Không có câu hỏi nào" in capsys.readouterr().out
