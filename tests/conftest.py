"""Shared fixtures: the real embedding model (loaded once), configs over temporary data folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from bot.config import ROOT, Config, load_config  # noqa: E402

DATA = Path(__file__).parent / "data"
FIXTURE_KB = DATA / "kb"
SHARED = ROOT.parent / "shared"
needs_shared = pytest.mark.skipif(
    not (SHARED / "catalogue.toml").exists(),
    reason="../shared (catalogue, eval sets, portal data) is not beside this checkout; a user's clone has none",
)


def write_config(folder: Path, knowledge_dirs: list[Path], backend: str = "sentence-transformers",
                 e5_dir: Path | None = None) -> Config:
    """A config.toml in `folder` with its own data folder; the converted model is shared, not copied."""
    folder.mkdir(parents=True, exist_ok=True)
    dirs = ", ".join(f'"{d}"' for d in knowledge_dirs)
    (folder / "config.toml").write_text(
        f'[data]\ndir = "data"\n\n[knowledge]\ndirs = [{dirs}]\n\n[model]\nbackend = "{backend}"\n',
        encoding="utf-8",
    )
    cfg = load_config(folder / "config.toml", env={})
    if e5_dir is not None:
        cfg.model_dir.parent.mkdir(parents=True, exist_ok=True)
        if not cfg.model_dir.exists():
            cfg.model_dir.symlink_to(e5_dir, target_is_directory=True)
    return cfg


@pytest.fixture(scope="session")
def e5_dir() -> Path:
    """The converted multilingual-e5-small folder (converted once into the project's data folder)."""
    from bot.engine.encoder import prepare_model

    path = prepare_model(load_config(ROOT / "config.toml", env={}))
    assert path is not None
    return path


@pytest.fixture(scope="session")
def encoder(e5_dir):
    """The real sentence-transformers encoder, loaded once per session."""
    from bot.engine.encoder import DEFAULT_MODEL, SentenceTransformerEncoder

    return SentenceTransformerEncoder(str(e5_dir), DEFAULT_MODEL, threads=1)


@pytest.fixture
def kb_copy(tmp_path) -> Path:
    """A private copy of the small test knowledge base, free to break."""
    target = tmp_path / "kb"
    shutil.copytree(FIXTURE_KB, target)
    return target


@pytest.fixture
def small_cfg(tmp_path, kb_copy, e5_dir) -> Config:
    """Config over the copied test knowledge base, with an empty data folder."""
    return write_config(tmp_path / "site", [kb_copy], e5_dir=e5_dir)


@pytest.fixture
def small_index(small_cfg, encoder):
    """The small test knowledge base, built."""
    from bot.engine.index import build_index

    build_index(small_cfg, lambda: encoder, progress=False)
    return small_cfg


@pytest.fixture(scope="session")
def shipped(tmp_path_factory, e5_dir, encoder):
    """An assistant over the knowledge base shipped in knowledge/, built once per session."""
    from bot.engine.assistant import Assistant
    from bot.engine.index import build_index

    cfg = write_config(tmp_path_factory.mktemp("shipped"), [ROOT / "knowledge"], e5_dir=e5_dir)
    # The checkout's own embedding cache (git-ignored; keyed by model, role and text): a session embeds only what
    # changed since the last one instead of the whole base (minutes on two busy cores).
    cache = ROOT / "data" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cfg.data_dir / "cache").symlink_to(cache, target_is_directory=True)
    build_index(cfg, lambda: encoder, progress=False)
    return Assistant(cfg, encoder=encoder).load()
