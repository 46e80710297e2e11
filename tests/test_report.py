"""The HTML report built from a generated log; `log purge` through the command line."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bot.config import ROOT
from bot.engine.answer import Answer
from bot.engine.knowledge import load_knowledge
from bot.service.qlog import QuestionLog
from bot.staff.report import charts, parse_since, render_html, summarize
from bot.staff.review import group
from bot.staff.sample import faq_questions, generate_sample

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def sample_rows(tmp_path_factory):
    log = QuestionLog(tmp_path_factory.mktemp("report") / "q.db", b"s")
    try:
        count = generate_sample(log, faq_questions(load_knowledge([ROOT / "knowledge"])), days=30, now=NOW)
        for _ in range(200):  # a frequent unanswered question that a browser would run if it were not escaped
            log.record(channel="web", user="x", question="&lt;script&gt;alert(1)&lt;/script&gt; nộp thuế đất ở đâu",
                       answer=Answer("q", "decline"), latency_ms=20)
        rows = log.questions()
    finally:
        log.close()
    assert len(rows) == count + 200
    return rows


def test_summary_matches_the_log(sample_rows):
    s = summarize(sample_rows, tickets=3)
    questions = [r for r in sample_rows if r["kind"] in ("answer", "decline")]
    assert s["questions"] == len(questions) and s["messages"] == len(sample_rows)
    assert s["answered"] + s["declined"] == s["questions"]
    assert s["answer_rate"] == pytest.approx(sum(r["kind"] == "answer" for r in questions) / len(questions))
    rated = [r for r in sample_rows if r["feedback"] is not None]
    assert s["feedback_rate"] == pytest.approx(len(rated) / len(questions))
    assert s["satisfaction"] == pytest.approx(sum(r["feedback"] == 1 for r in rated) / len(rated))
    assert s["latency"]["p50"] == pytest.approx(np.percentile([r["latency_ms"] for r in questions], 50))
    assert s["latency"]["p50"] <= s["latency"]["p90"] <= s["latency"]["p99"]
    assert sum(sum(c.values()) for c in s["per_day"].values()) == len(questions)
    assert len(s["per_day"]) == 31  # 30 generated days, and today for the question recorded now
    assert set(s["channels"]) == {"telegram", "zalo", "web"}
    counts = [e["count"] for e in s["top_entries"]]
    assert counts == sorted(counts, reverse=True) and len(counts) == 15
    assert summarize([])["answer_rate"] is None


def test_report_is_self_contained(sample_rows, tmp_path):
    s = summarize(sample_rows, tickets=2)
    images = charts(s, sample_rows)
    assert set(images) == {"per_day", "rate", "latency"}
    for url in images.values():
        png = base64.b64decode(url.removeprefix("data:image/png;base64,"))
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    clusters = group(sample_rows, None)  # identical wordings only: no model needed here
    page = render_html(s, images, clusters, "30d", NOW, sample=True)
    assert page.count("<img") == 3 and page.count("data:image/png;base64,") == 3
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:|//)""", page), "no external asset"
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; nộp thuế đất ở đâu" in page
    assert "Báo cáo mẫu" in page and f"{s['answer_rate'] * 100:.1f}%" in page
    assert clusters[1].example in page and s["top_entries"][0]["title"] in page


def test_parse_since():
    assert parse_since("30d", NOW) == NOW - timedelta(days=30)
    assert parse_since("8w", NOW) == NOW - timedelta(weeks=8)
    assert parse_since("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="30d"):
        parse_since("hôm qua", NOW)


def test_report_and_purge_commands(small_index, tmp_path, monkeypatch, capsys):
    from bot.cli import main

    monkeypatch.setenv("LOG_HASH_KEY", "k")
    config = str(small_index.base / "config.toml")
    out = tmp_path / "out" / "r.html"
    assert main(["--config", config, "report", "--sample", "--since", "30d", "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    assert "Đã viết báo cáo" in capsys.readouterr().out
    assert not (small_index.data_dir / "log" / "questions.db").exists()  # the sample never touches the real log

    moment = [NOW - timedelta(days=400)]
    log = QuestionLog.open(small_index)
    log.clock = lambda: moment[0]
    for days in (400, 200, 10):
        moment[0] = datetime.now(UTC) - timedelta(days=days)
        log.record(channel="web", user="u", question=f"{days}", answer=Answer("q", "decline"), latency_ms=1)
    log.close()
    assert main(["--config", config, "log", "purge"]) == 0  # [log] retention_days = 180
    assert "Đã xoá 2 câu hỏi" in capsys.readouterr().out
    assert main(["--config", config, "log", "purge", "--days", "5"]) == 0
    assert "Đã xoá 1 câu hỏi" in capsys.readouterr().out
    assert main(["--config", config, "report", "--out", str(out)]) == 0
    assert "0 câu hỏi" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="30d"):
        main(["--config", config, "report", "--since", "hôm qua", "--out", str(out)])
