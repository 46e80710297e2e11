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


def seed_embedding_cache(cfg: Config) -> None:
    """Start from a copy of this checkout's embedding cache when it has one (`make index` fills it): vectors are
    keyed by model, role and text, so a copy only saves embedding the same text again. A fresh checkout (CI) has
    none and embeds everything."""
    import sqlite3

    source = ROOT / "data" / "cache" / "embeddings.sqlite"
    if not source.exists():
        return
    target = cfg.data_dir / "cache" / "embeddings.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=1) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
    except sqlite3.Error:  # busy or damaged: embed from scratch
        target.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def shipped(tmp_path_factory, e5_dir, encoder):
    """An assistant over the knowledge base shipped in knowledge/, built once per session."""
    from bot.engine.assistant import Assistant
    from bot.engine.index import build_index

    cfg = write_config(tmp_path_factory.mktemp("shipped"), [ROOT / "knowledge"], e5_dir=e5_dir)
    seed_embedding_cache(cfg)
    build_index(cfg, lambda: encoder, progress=False)
    return Assistant(cfg, encoder=encoder).load()


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 15 cluster for the session (tests/pg.py); its password is in $PGPASSWORD meanwhile."""
    from tests.pg import Postgres

    server = Postgres()
    previous = os.environ.get("PGPASSWORD")
    os.environ.update(server.env)
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = previous
        server.close()


@pytest.fixture
def pg_url(postgres, request) -> str:
    """A fresh database of the session's cluster, named after the test (URL without the password)."""
    import re

    return postgres.create_database("t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50])
