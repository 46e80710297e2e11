"""The national database import, end to end: records → entries beside knowledge/ → answers citing codes."""

import os
import subprocess
import sys

from bot.config import ROOT
from bot.engine.assistant import Assistant
from bot.engine.index import build_index
from bot.engine.knowledge import load_knowledge
from bot.importers.portal import import_portal
from tests.conftest import DATA

PORTAL = DATA / "portal"


def test_imported_procedures_are_indexed_and_cited_by_code(small_cfg, encoder):
    report = import_portal(PORTAL, small_cfg.portal_dir)
    assert report.entries == 4 and report.bad == 4
    build = build_index(small_cfg, lambda: encoder, progress=False)
    assert build.entries == 7 + 4
    assistant = Assistant(small_cfg, encoder=encoder).load()
    answer = assistant.ask("Hồ sơ đăng ký hoạt động của tổ chức hành nghề luật sư gồm những gì?")
    top = answer.sources[0]
    assert top.id == "tthc-1-002010" and "1.002010" in top.topics
    assert answer.parts[0][0] == "Thành phần hồ sơ"
    assert top.url.startswith("https://dichvucong.gov.vn/")
    # curated answers are unaffected
    assert assistant.ask("đăng ký kết hôn cần giấy tờ gì").sources[0].id == "dang-ky-ket-hon"


def test_curated_entry_naming_the_same_code_takes_precedence(small_cfg, kb_copy):
    import_portal(PORTAL, small_cfg.portal_dir)
    path = kb_copy / "thu-tuc/dang-ky-ket-hon.md"
    path.write_text(path.read_text(encoding="utf-8").replace("[1.000894]", "[1.000894, 1.002010]"), encoding="utf-8")
    kb = load_knowledge(small_cfg.knowledge_dirs, imported=[small_cfg.portal_dir])
    assert not kb.errors
    assert "tthc-1-002010" not in kb.entries and kb.shadowed == 1
    assert "tthc-1-000875" in kb.entries


def test_import_command_reports_bad_records_and_builds(small_cfg):
    env = dict(os.environ, CCHC_CONFIG=str(small_cfg.base / "config.toml"))
    run = subprocess.run([sys.executable, "index_builder.py", "--import-portal", str(PORTAL), "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "loi/1.900001.json" in run.stdout  # broken JSON: reported with its file, the rest imported
    assert "Đã xây chỉ mục" in run.stdout
