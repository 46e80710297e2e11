"""Answer quality on the shipped knowledge base, with the real model: golden questions and the dev set."""

import os
import re
import subprocess
import sys

from bench.quality import load_cases, score
from bot.config import ROOT
from tests.conftest import SHARED, needs_shared

GOLDEN = ROOT / "bench" / "golden.tsv"


def test_golden_questions(shipped):
    result = score(shipped.ask, load_cases(GOLDEN))
    summary = result.line() + "\n" + "\n".join(result.misses)
    assert result.hit1 / result.inside >= 0.85, summary
    assert result.hit3 / result.inside >= 0.95, summary
    assert result.declined_ok == result.outside, summary
    assert result.false_declines <= 2, summary


def test_questions_without_diacritics_find_the_same_entry(shipped):
    pairs = [("Làm lại thẻ căn cước bị mất", "lam lai the can cuoc bi mat"),
             ("Đăng ký thường trú cho con", "dang ky thuong tru cho con"),
             ("Xin phiếu lý lịch tư pháp", "xin phieu ly lich tu phap"),
             ("Đăng ký kết hôn mất bao lâu", "dang ky ket hon mat bao lau")]
    for with_marks, without in pairs:
        a, b = shipped.ask(with_marks), shipped.ask(without)
        assert b.answered, without
        topics_a = set(a.sources[0].topics)
        assert topics_a & set(b.sources[0].topics), (with_marks, a.sources[0].id, b.sources[0].id)


def test_abbreviations_are_understood(shipped):
    for question, expected in [("đổi GPLX", "doi-giay-phep-lai-xe"), ("cấp lại thẻ BHYT", "cap-lai-the-bhyt"),
                               ("làm CCCD lần đầu", "cap-the-can-cuoc"), ("rut BHXH mot lan", "bhxh-mot-lan")]:
        answer = shipped.ask(question)
        assert expected in {t for s in answer.sources[:3] for t in s.topics}, (question, answer.sources)


@needs_shared
def test_dev_set_with_the_official_scorer(shipped):
    env = dict(os.environ, CCHC_CONFIG=str(shipped.cfg.base / "config.toml"))
    run = subprocess.run(
        [sys.executable, str(SHARED / "eval" / "score.py"), str(SHARED / "eval" / "dev.tsv"),
         "--cmd", f"{sys.executable} -m bot ask --json", "--show-misses"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    figures = dict(re.findall(r"(hit@1|hit@3) ([0-9.]+)", run.stdout))
    declines = re.search(r"false-declines (\d+)/\d+\s+declined-ok (\d+)/(\d+)", run.stdout)
    assert float(figures["hit@1"]) >= 0.95, run.stdout
    assert float(figures["hit@3"]) >= 1.0, run.stdout
    assert declines and declines.group(1) == "0" and declines.group(2) == declines.group(3), run.stdout
