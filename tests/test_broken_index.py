"""Broken knowledge files and damaged indexes: a clear message naming the file, and the previous index serving."""

from __future__ import annotations

import json
import logging
import sqlite3

import numpy as np
import pytest

from bot.engine.assistant import Assistant
from bot.engine.index import CURRENT, BuildRefused, IndexUnavailable, build_index, current_version, open_index
from bot.engine.knowledge import load_knowledge
from index_builder import main as builder_main
from tests.conftest import write_config

QUESTION = "đăng ký khai sinh cần giấy tờ gì"
GOOD = """---
id: {id}
loai: chu-de
tieu_de: {title}
---

Một chủ đề để thử, có đủ nội dung.

## Nội dung

Văn bản của chủ đề thử nghiệm.
"""


def answers_from_the_old_index(assistant: Assistant, version: str) -> None:
    answer = assistant.ask(QUESTION)
    assert answer.kind == "answer" and answer.entry_id == "dang-ky-khai-sinh"
    assert assistant.data is not None and assistant.data.version == version


def refused(cfg, encoder, capsys, name: str) -> str:
    """Build through the admin command and through the library: both refuse, naming the file."""
    assert builder_main(["--config", str(cfg.base / "config.toml"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert name in err and "Chỉ mục đang phục vụ vẫn giữ nguyên" in err, err
    with pytest.raises(BuildRefused) as e:
        build_index(cfg, lambda: encoder, progress=False)
    assert any(p.path.endswith(name) for p in e.value.kb.errors)
    return err


# --------------------------------------------------------------------------- broken knowledge files

FRONT_MATTER = {
    "no-opening": "id: x\nloai: chu-de\n---\n\nTóm tắt.\n",
    "no-closing": "---\nid: hong\nloai: chu-de\ntieu_de: Hỏng\n\nTóm tắt.\n",
    "bad-yaml": "---\nid: hong\nloai: chu-de\ntieu_de: [chưa đóng\n---\n\nTóm tắt.\n",
    "tab-indent": "---\nid: hong\nloai: chu-de\n\ttieu_de: Hỏng\n---\n\nTóm tắt.\n",
    "nested": "---\nid: hong\nloai: chu-de\ntieu_de:\n  a: b\n---\n\nTóm tắt.\n",
    "duplicate-key": "---\nid: hong\nloai: chu-de\ntieu_de: A\ntieu_de: B\n---\n\nTóm tắt.\n",
    "list-id": "---\nid: [a, b]\nloai: chu-de\ntieu_de: A\n---\n\nTóm tắt.\n",
    "python-tag": "---\nid: hong\nloai: chu-de\ntieu_de: !!python/object/apply:os.system [echo pwned]\n---\n\nx\n",
    "alias-bomb": "---\nid: hong\nloai: chu-de\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a]\n"
                  "c: &c [*b, *b, *b, *b, *b, *b, *b]\ntieu_de: [*c, *c, *c, *c, *c, *c, *c]\n---\n\nx\n",
    "binary": "---\n\x00\x01\x02\x03\n---\n",
    "empty": "",
    "only-dashes": "---\n---\n",
}


@pytest.mark.parametrize("case", sorted(FRONT_MATTER))
def test_malformed_front_matter_is_refused_naming_the_file(small_index, kb_copy, encoder, capsys, case):
    assistant = Assistant(small_index, encoder=encoder).load()
    before = assistant.data.version
    (kb_copy / "chu-de/hong.md").write_text(FRONT_MATTER[case], encoding="utf-8")
    refused(small_index, encoder, capsys, "chu-de/hong.md")
    assert current_version(small_index.index_root) == before
    answers_from_the_old_index(assistant, before)


ENCODINGS = {
    "latin-1": ("Thu tuc café", "latin-1", "Latin-1"),
    "windows-1258": ("Đăng ký", "cp1258", "Windows-1258"),
    "utf-16 with BOM": ("Đăng ký", "utf-16", "UTF-16"),
    "utf-16-be with BOM": ("Đăng ký", "utf-16-be", "UTF-16"),
    "utf-16 without BOM": ("Dang ky", "utf-16-le", "UTF-16"),
    "utf-32": ("Đăng ký", "utf-32", "UTF-32"),
}


@pytest.mark.parametrize("case", sorted(ENCODINGS))
def test_a_file_in_another_encoding_is_refused_saying_which(small_index, kb_copy, encoder, capsys, case):
    title, codec, said = ENCODINGS[case]
    before = current_version(small_index.index_root)
    raw = GOOD.format(id="hong", title=title).encode(codec, errors="replace")
    if codec == "utf-16-be":
        raw = b"\xfe\xff" + raw
    (kb_copy / "chu-de/hong.md").write_bytes(raw)
    err = refused(small_index, encoder, capsys, "chu-de/hong.md")
    assert said in err and "UTF-8" in err
    assert current_version(small_index.index_root) == before


def test_a_utf8_bom_and_windows_line_ends_are_accepted(small_index, kb_copy, encoder):
    text = GOOD.format(id="co-bom", title="Chủ đề có BOM").replace("\n", "\r\n")
    (kb_copy / "chu-de/co-bom.md").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    report = build_index(small_index, lambda: encoder, progress=False)
    assert not report.up_to_date and report.entries == 8
    assert open_index(small_index).entries["co-bom"].title == "Chủ đề có BOM"


def test_duplicate_ids_name_both_files(small_index, kb_copy, tmp_path, encoder, capsys):
    other = tmp_path / "kb2"
    (other / "thu-tuc").mkdir(parents=True)
    (other / "thu-tuc/dang-ky-khai-sinh.md").write_bytes((kb_copy / "thu-tuc/dang-ky-khai-sinh.md").read_bytes())
    cfg = write_config(small_index.base, [kb_copy, other])
    before = current_version(cfg.index_root)
    err = refused(cfg, encoder, capsys, "thu-tuc/dang-ky-khai-sinh.md")
    assert "id 'dang-ky-khai-sinh' đã dùng ở kb/thu-tuc/dang-ky-khai-sinh.md" in err, err
    assert "kb2/thu-tuc/dang-ky-khai-sinh.md" in err
    assert current_version(cfg.index_root) == before


def test_a_procedure_missing_a_required_section_is_refused(small_index, kb_copy, encoder, capsys):
    path = kb_copy / "thu-tuc/dang-ky-ket-hon.md"
    text = path.read_text(encoding="utf-8")
    start = text.index("## Phí, lệ phí")
    end = text.index("## ", start + 3)
    path.write_text(text[:start] + text[end:], encoding="utf-8")
    err = refused(small_index, encoder, capsys, "thu-tuc/dang-ky-ket-hon.md")
    assert "thiếu mục '## Phí, lệ phí'" in err


def test_a_file_deleted_between_listing_and_reading_is_named(small_index, kb_copy, encoder, capsys):
    """A dangling link is exactly what a reader sees when a file is deleted after the folder was listed."""
    (kb_copy / "chu-de/da-xoa.md").symlink_to(kb_copy / "chu-de/khong-con-nua.md")
    err = refused(small_index, encoder, capsys, "chu-de/da-xoa.md")
    assert "bị xóa hoặc đổi tên trong lúc đọc" in err


class DeletingEncoder:
    """The real encoder; while the build embeds, a curator deletes a knowledge file."""

    def __init__(self, inner, victim):
        self.inner, self.victim = inner, victim
        self.model_id, self.dim = inner.model_id, inner.dim

    def encode(self, texts, role="passage", batch_size=32):
        self.victim.unlink(missing_ok=True)
        return self.inner.encode(texts, role=role, batch_size=batch_size)


def test_a_file_deleted_while_embedding_gives_a_consistent_index_and_the_next_build_drops_it(small_index, kb_copy,
                                                                                         encoder):
    victim = kb_copy / "chu-de/xoa-giua-chung.md"
    victim.write_text(GOOD.format(id="xoa-giua-chung", title="Chủ đề sẽ bị xóa"), encoding="utf-8")
    report = build_index(small_index, lambda: DeletingEncoder(encoder, victim), progress=False)
    assert not victim.exists()
    data = open_index(small_index)  # what was read is what was built: complete and consistent
    assert "xoa-giua-chung" in data.entries and data.faiss_index.ntotal == report.chunks
    again = build_index(small_index, lambda: encoder, progress=False)
    assert not again.up_to_date and "xoa-giua-chung" not in open_index(small_index).entries


def test_check_reports_every_broken_file_at_once(small_index, kb_copy):
    (kb_copy / "chu-de/a.md").write_bytes(GOOD.format(id="a", title="Á").encode("utf-16"))
    (kb_copy / "chu-de/b.md").write_text("id: b\n", encoding="utf-8")
    (kb_copy / "chu-de/c.md").write_text(GOOD.format(id="c", title="[x"), encoding="utf-8")
    kb = load_knowledge([kb_copy])
    assert {p.path.rsplit("/", 1)[-1] for p in kb.errors} >= {"a.md", "b.md", "c.md"}


# --------------------------------------------------------------------------- damaged index files


def damage(folder, name: str, how: str) -> None:
    path = folder / name
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flipped":
        middle = len(raw) // 2
        path.write_bytes(raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1 :])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    elif how == "deleted":
        path.unlink()
    else:
        raise AssertionError(how)


DAMAGE = [(name, how) for name in ("vectors.faiss", "meta.db", "manifest.json")
          for how in ("truncated", "empty", "flipped", "garbage", "deleted")]


def rebuilt(cfg, kb_copy, encoder) -> str:
    """A new version, built after a curator's edit; the previous one stays on disk."""
    path = kb_copy / "chu-de/mot-cua-lien-thong.md"
    path.write_text(path.read_text(encoding="utf-8") + "\n## Ghi chú\n\nMột ghi chú mới.\n", encoding="utf-8")
    return build_index(cfg, lambda: encoder, progress=False).version


@pytest.mark.parametrize("name,how", DAMAGE, ids=[f"{n}-{h}" for n, h in DAMAGE])
def test_a_damaged_new_version_is_refused_and_the_running_bot_keeps_serving(small_index, kb_copy, encoder, caplog,
                                                                           name, how):
    assistant = Assistant(small_index, encoder=encoder).load()
    old = assistant.data.version
    new = rebuilt(small_index, kb_copy, encoder)
    damage(small_index.index_root / new, name, how)
    with caplog.at_level(logging.ERROR, logger="bot"):
        answers_from_the_old_index(assistant, old)
        answers_from_the_old_index(assistant, old)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # said once, not at every question
    if name != "manifest.json" or how not in ("deleted",):
        assert f"{new}/{name}" in errors[0] or f"{new}/manifest.json" in errors[0], errors[0]
    else:  # without its manifest a version is not complete, so CURRENT does not count it
        assert "chưa có chỉ mục" not in errors[0]


@pytest.mark.parametrize("name,how", DAMAGE, ids=[f"{n}-{h}" for n, h in DAMAGE])
def test_a_damaged_index_is_refused_at_start_naming_the_file_and_the_previous_version_serves(
        small_index, kb_copy, encoder, caplog, name, how):
    old = current_version(small_index.index_root)
    new = rebuilt(small_index, kb_copy, encoder)
    damage(small_index.index_root / new, name, how)
    if not (name == "manifest.json" and how == "deleted"):
        with pytest.raises(IndexUnavailable, match=f"{new}/{name}"):
            open_index(small_index)
    with caplog.at_level(logging.ERROR, logger="bot"):
        assistant = Assistant(small_index, encoder=encoder).load()
    answers_from_the_old_index(assistant, old)
    assert any(old in r.getMessage() for r in caplog.records), caplog.text


def test_a_damaged_index_with_no_previous_version_is_a_clear_error_at_the_command_line(small_index, capsys):
    from bot.cli import main as cli_main

    damage(small_index.index_root / current_version(small_index.index_root), "vectors.faiss", "truncated")
    with pytest.raises(SystemExit) as e:
        cli_main(["--config", str(small_index.base / "config.toml"), "ask", "khai sinh"])
    assert "vectors.faiss" in str(e.value) and "index_builder.py --force" in str(e.value)


def test_a_forced_rebuild_repairs_a_damaged_index(small_index, encoder):
    version = current_version(small_index.index_root)
    damage(small_index.index_root / version, "meta.db", "flipped")
    report = build_index(small_index, lambda: encoder, force=True, progress=False)
    assert report.version != version and report.embedded == 0  # the cached vectors were intact
    answers_from_the_old_index(Assistant(small_index, encoder=encoder).load(), report.version)


def test_a_damaged_manifest_makes_the_next_build_rebuild(small_index, encoder):
    version = current_version(small_index.index_root)
    (small_index.index_root / version / "manifest.json").write_text("{not json", encoding="utf-8")
    report = build_index(small_index, lambda: encoder, progress=False)
    assert not report.up_to_date and report.version != version


def test_current_pointing_nowhere_falls_back_to_the_newest_intact_version(small_index, encoder, caplog):
    version = current_version(small_index.index_root)
    (small_index.index_root / CURRENT).write_text("v-khong-co\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="bot"):
        assistant = Assistant(small_index, encoder=encoder).load()
    answers_from_the_old_index(assistant, version)


def test_a_database_edited_behind_the_checksum_is_refused(small_index):
    folder = small_index.index_root / current_version(small_index.index_root)
    db = sqlite3.connect(folder / "meta.db")
    db.execute("update entries set title = 'Giả mạo' where id = 'dang-ky-khai-sinh'")
    db.commit()
    db.close()
    with pytest.raises(IndexUnavailable, match="meta.db.*sha256"):
        open_index(small_index)


# --------------------------------------------------------------------------- model mismatch


class OtherModel:
    """An encoder with 768-dimensional vectors, as if another model were converted into the model folder."""

    model_id, dim = "intfloat/multilingual-e5-base", 768

    def __init__(self, inner):
        self.inner = inner

    def encode(self, texts, role="passage", batch_size=32):
        vectors = self.inner.encode(texts, role=role, batch_size=batch_size)
        return np.hstack([vectors, vectors]) / np.sqrt(2)


def test_an_index_from_another_model_is_refused_naming_both(small_index):
    manifest_path = small_index.index_root / current_version(small_index.index_root) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model"] = "intfloat/multilingual-e5-base"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexUnavailable, match="multilingual-e5-base.*multilingual-e5-small.*index_builder.py"):
        Assistant(small_index).load()


def test_a_model_with_other_vectors_under_the_same_name_is_refused(small_index, encoder):
    with pytest.raises(IndexUnavailable, match="384.*768"):
        Assistant(small_index, encoder=OtherModel(encoder)).load()
