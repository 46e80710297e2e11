"""The command line: `ask --json` (the contract of ../shared/eval/score.py), `ask`, `chat`, `index_builder.py`."""

import json
import os
import subprocess
import sys

import pytest

from bot.config import ROOT

QUESTIONS = [
    "Đăng ký kết hôn cần những giấy tờ gì?",
    "lam giay khai sinh o dau",
    "",
    "Cách nấu canh chua cá lóc",
    "😀",
    "<b>khai sinh</b>",
    "x" * 10_000,
]


def run(args, cfg, stdin="", timeout=180):
    env = dict(os.environ, CCHC_CONFIG=str(cfg.base / "config.toml"))
    return subprocess.run([sys.executable, *args], cwd=ROOT, input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def built(small_index):
    return small_index


def test_ask_json_answers_every_line_in_order(built):
    result = run(["-m", "bot", "ask", "--json"], built, "".join(q + "\n" for q in QUESTIONS))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(QUESTIONS)
    answers = [json.loads(line) for line in lines]
    for answer in answers:
        assert set(answer) >= {"answer", "declined", "confidence", "sources", "links"}
        assert isinstance(answer["declined"], bool) and isinstance(answer["confidence"], float)
        for source in answer["sources"]:
            assert set(source) >= {"id", "topics", "title", "score", "url"}
            assert isinstance(source["topics"], list)
        for link in answer["links"]:
            assert link["url"].startswith("https://")
    first = answers[0]
    assert not first["declined"] and first["sources"][0]["id"] == "dang-ky-ket-hon"
    assert "1.000894" in first["sources"][0]["topics"]
    assert answers[1]["sources"][0]["id"] == "dang-ky-khai-sinh"
    assert [a["declined"] for a in answers[2:5]] == [True, True, True]
    assert "<b>" not in answers[5]["answer"]


def test_ask_prints_one_plain_answer(built):
    result = run(["-m", "bot", "ask", "đăng", "ký", "khai", "sinh", "ở", "đâu"], built)
    assert result.returncode == 0, result.stderr
    assert "Nơi nộp, cách thức:" in result.stdout and "Nguồn:" in result.stdout
    assert "Traceback" not in result.stderr


def test_chat_remembers_the_procedure(built):
    result = run(["-m", "bot", "chat"], built, "Đăng ký khai sinh ở đâu?\ncòn lệ phí thì sao?\nthoát\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Trợ lý:") == 2
    second = result.stdout.split("Trợ lý:")[2]
    assert "Phí, lệ phí:" in second and "miễn lệ phí" in second


def test_ask_without_an_index_says_what_to_do(tmp_path, kb_copy):
    from tests.conftest import write_config

    cfg = write_config(tmp_path / "empty", [kb_copy])
    result = run(["-m", "bot", "ask", "khai sinh"], cfg, timeout=60)
    assert result.returncode != 0
    assert "index_builder.py" in result.stderr and "Traceback" not in result.stderr


def test_builder_refuses_a_broken_base_and_keeps_the_index(built, kb_copy):
    before = (built.index_root / "CURRENT").read_text()
    (kb_copy / "hoi-dap/hong.md").write_text("---\nid: hong\nloai: hoi-dap\ncau_hoi: [x]\n---\n", encoding="utf-8")
    result = run(["index_builder.py"], built, timeout=120)
    assert result.returncode == 1
    assert "kb/hoi-dap/hong.md:1: thiếu trường 'lien_quan'" in result.stderr
    assert "Chỉ mục đang phục vụ vẫn giữ nguyên" in result.stderr
    assert (built.index_root / "CURRENT").read_text() == before


def test_builder_no_change_rebuild_is_quick_and_says_so(built):
    result = run(["index_builder.py"], built, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "không có gì thay đổi" in result.stdout
