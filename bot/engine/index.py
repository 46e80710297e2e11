"""Build the searchable index atomically and incrementally, and open the current one."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sqlite_utils

from bot.config import Config

from .chunks import LISTING_PREFIX, Chunk, chunk_entry, listing_chunk
from .knowledge import Entry, KnowledgeBase, Link, Listing, Section, coverage_lines, load_knowledge
from .text import acronym_table, lexical_form, normalize, restoration_table

FORMAT = 4  # bump when the layout of a built index changes
CURRENT = "CURRENT"
EMBED_BATCH = 64  # chunks embedded (and cached) at a time
EXACT_SEARCH_LIMIT = 200_000  # chunks; above this an HNSW graph replaces exhaustive search
_CODE_FILES = ("chunks.py", "index.py", "text.py", "knowledge.py")
INDEX_FILES = ("vectors.faiss", "meta.db")  # besides manifest.json, which holds their sizes and checksums


class IndexUnavailable(RuntimeError):
    """No usable index: missing, built with another model, or unreadable."""


class BuildRefused(RuntimeError):
    """The knowledge base has errors; the current index was left untouched."""

    def __init__(self, kb: KnowledgeBase):
        super().__init__(f"{len(kb.errors)} lỗi trong kho tri thức")
        self.kb = kb


@dataclass
class BuildReport:
    """What a build did."""

    entries: int = 0
    chunks: int = 0
    embedded: int = 0
    seconds: float = 0.0
    version: str = ""
    up_to_date: bool = False
    warnings: list[str] = field(default_factory=list)
    coverage: list[str] = field(default_factory=list)  # what the base covers, for admins

    def summary(self) -> str:
        """One line for admins."""
        if self.up_to_date:
            return f"Chỉ mục đã cập nhật ({self.version}): {self.entries} mục, {self.chunks} đoạn — không có gì thay đổi."
        return (f"Đã xây chỉ mục {self.version}: {self.entries} mục, {self.chunks} đoạn, "
                f"nhúng mới {self.embedded} đoạn, {self.seconds:.1f} giây.")


# --------------------------------------------------------------------------- fingerprint and cache


def fingerprint(cfg: Config, kb_files: list[Path]) -> str:
    """Hash of everything a build depends on: knowledge files, model name, and the code that chunks them."""
    h = hashlib.sha256(f"format={FORMAT}\nmodel={cfg.model.name}\n".encode())
    here = Path(__file__).parent
    for name in _CODE_FILES:
        h.update((here / name).read_bytes())
    for path in sorted(kb_files):
        h.update(str(path).encode() + b"\0")
        with contextlib.suppress(OSError):
            h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(model_id: str, role: str, text: str) -> str:
    """Key of an embedding in the cache: the same text, role and model never get embedded twice."""
    return hashlib.sha256(f"{model_id}\0{role}\0{text}".encode()).hexdigest()


class EmbeddingCache:
    """Vectors already computed, kept across builds in the data folder."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite_utils.Database(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        if "vectors" not in self.db.table_names():
            self.db.table("vectors").create({"key": str, "vector": bytes}, pk="key")

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors among these keys."""
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            marks = ",".join("?" * len(batch))
            for key, blob in self.db.execute(f"select key, vector from vectors where key in ({marks})", batch):
                out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Store vectors (committed at once, so a crash keeps everything stored before it)."""
        with self.db.conn:
            self.db.table("vectors").insert_all(
                ({"key": k, "vector": np.asarray(v, dtype=np.float32).tobytes()} for k, v in items.items()),
                replace=True,
            )

    def close(self) -> None:
        """Close the database."""
        self.db.close()


# --------------------------------------------------------------------------- build


@contextlib.contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError("một lần xây chỉ mục khác đang chạy; đợi nó xong rồi thử lại") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def named_version(root: Path) -> str | None:
    """The version CURRENT names, complete or not."""
    try:
        return (root / CURRENT).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def current_version(root: Path) -> str | None:
    """The name of the index version now serving, if any (a version counts once its manifest is written)."""
    name = named_version(root)
    return name if name and "/" not in name and (root / name / "manifest.json").exists() else None


def read_manifest(root: Path) -> dict | None:
    """The manifest of the serving index, if any."""
    version = current_version(root)
    if not version:
        return None
    try:
        manifest = json.loads((root / version / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable: the next build replaces it
    return manifest if isinstance(manifest, dict) else None


# Named moments of a build at which the environment variable CCHC_CRASH_AT makes the builder kill itself
# (SIGKILL, as a power cut or the OOM killer would): tests kill a build in each window deterministically.
CRASH_POINTS = ("before-writing", "writing", "written", "switching", "switched")


def _crash_point(name: str) -> None:
    if os.environ.get("CCHC_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str, crash_point: str = "") -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    _crash_point(crash_point)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _lexical_row(entry: Entry) -> dict[str, str]:
    keywords = entry.values("tu_khoa") + entry.values("cau_hoi") + entry.codes + [entry.text("so_hieu")]
    body = [entry.summary] + [f"{s.heading}\n{s.text}" for s in entry.sections]
    body += [entry.text(k) for k in ("linh_vuc", "co_quan_thuc_hien", "co_quan_ban_hanh", "dia_ban")]
    return {
        "entry_id": entry.id,
        "title": lexical_form(entry.title),
        "keywords": lexical_form(" ".join(keywords)),
        "body": lexical_form("\n".join(body)),
    }


def corpus_texts(kb: KnowledgeBase) -> Iterator[str]:
    """Texts for learning how folded words are spelled: all curated text, and the names of imported records."""
    for entry in kb.entries.values():
        yield entry.title
        if entry.imported:  # thousands of official records: their names carry the vocabulary
            yield entry.text("linh_vuc")
            continue
        yield from entry.values("tu_khoa")
        yield from entry.values("cau_hoi")
        yield entry.summary
        for section in entry.sections:
            yield section.text
    for term, expansions in kb.synonyms:
        yield term
        yield from expansions


def _entry_row(entry: Entry, kb: KnowledgeBase) -> dict:
    online = kb.link_for(entry.text("nop_truc_tuyen")) if entry.text("nop_truc_tuyen") else None
    return {
        "id": entry.id,
        "kind": entry.kind,
        "title": entry.title,
        "path": entry.path,
        "date": entry.date,
        "source_url": entry.source_url,
        "online": json.dumps(asdict(online), ensure_ascii=False) if online else None,
        "topics": json.dumps(entry.topics, ensure_ascii=False),
        "meta": json.dumps(entry.meta, ensure_ascii=False),
        "summary": entry.summary,
        "sections": json.dumps([[s.heading, s.text] for s in entry.sections], ensure_ascii=False),
    }


def make_faiss_index(vectors: np.ndarray):
    """Exact inner-product search while it is fast enough; an HNSW graph for very large bases."""
    import faiss

    dim = vectors.shape[1]
    index: faiss.Index
    if len(vectors) <= EXACT_SEARCH_LIMIT:
        index = faiss.IndexFlatIP(dim)
    else:
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        hnsw.hnsw.efSearch = 128
        index = hnsw
    if len(vectors):
        index.add(vectors)
    return index


class _Pace:
    """A progress line every `every` seconds through `log`, for builds run from a script or a service, where no
    bar is drawn: done, rate and the time left."""

    def __init__(self, total: int, log: Callable[[str], None], every: float = 10.0):
        self.total, self.log, self.every = total, log, every
        self.done = 0
        self.started = self.last = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate else 0.0
        self.log(f"Nhúng: {self.done}/{self.total} đoạn ({100 * self.done / max(self.total, 1):.0f}%, "
                 f"{rate:.1f} đoạn/giây, còn khoảng {_duration(left)})")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} phút {secs} giây" if minutes else f"{secs} giây"


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="đoạn", desc="Nhúng", disable=not enabled, dynamic_ncols=True)


def build_index(
    cfg: Config,
    encoder_factory: Callable[[], object] | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda _msg: None,
) -> BuildReport:
    """Validate, chunk, embed what changed, write a new index version and switch to it atomically."""
    started = time.perf_counter()
    kb = load_knowledge(cfg.knowledge_dirs, imported=[cfg.portal_dir])
    if kb.errors:
        raise BuildRefused(kb)
    root = cfg.index_root
    report = BuildReport(entries=len(kb.entries), warnings=[str(w) for w in kb.warnings], coverage=coverage_lines(kb))
    stamp = fingerprint(cfg, kb.files)
    with _build_lock(root):
        _remove_leftovers(root)
        manifest = read_manifest(root)
        if manifest and manifest.get("fingerprint") == stamp and not force:
            report.up_to_date, report.version, report.chunks = True, current_version(root) or "", manifest["chunks"]
            # a build killed after its switch left the versions before it: keep the serving one and the newest other
            _remove_old_versions(root, keep={report.version, *[v for v in versions(root) if v != report.version][:1]})
            return report

        chunks: list[Chunk] = [c for e in kb.entries.values() for c in chunk_entry(e)]
        chunks += [listing_chunk(x) for x in kb.listings]  # last: retrieval searches entries' chunks apart
        if encoder_factory is None:
            from .encoder import load_encoder

            encoder_factory = lambda: load_encoder(cfg)  # noqa: E731
        vectors, report.embedded = _embed(cfg, chunks, encoder_factory, progress, log)
        report.version, report.chunks = _publish(root, cfg, kb, chunks, vectors, stamp), len(chunks)
        _remove_old_versions(root, keep={report.version, (manifest or {}).get("version", "")})
    report.seconds = time.perf_counter() - started
    return report


def _remove_leftovers(root: Path) -> None:
    """What a crashed build left: its half-written folder, or a switch to a new version killed before its rename."""
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in root.glob(f".{CURRENT}.*"):
        stale.unlink(missing_ok=True)


def _embed(cfg: Config, chunks: list[Chunk], encoder_factory: Callable[[], object], progress: bool,
           log: Callable[[str], None]) -> tuple[np.ndarray, int]:
    """Every chunk's vector: from the embedding cache where it has one, else embedded (each distinct text once) and
    cached. Returns the vectors and how many texts were embedded; the encoder is loaded only when one is needed."""
    texts = [normalize(c.text) for c in chunks]
    model_id = cfg.model.name
    keys = [cache_key(model_id, c.role, t) for c, t in zip(chunks, texts)]
    cache = EmbeddingCache(cfg.data_dir / "cache" / "embeddings.sqlite")
    try:
        found = cache.get_many(list(dict.fromkeys(keys)))
        missing = [i for i, k in enumerate(keys) if k not in found]
        missing = list({keys[i]: i for i in missing}.values())  # each distinct text once
        dim = None
        if missing:
            encoder = encoder_factory()
            dim = encoder.dim  # type: ignore[attr-defined]
            log(f"Nhúng {len(missing)} đoạn mới bằng {model_id} (các đoạn khác lấy từ bộ nhớ đệm)…")
            # By role, then by length: a batch of texts of like length pads little (the model pads every text of a
            # batch to its longest).
            todo = sorted(missing, key=lambda i: (chunks[i].role, len(texts[i])))
            pace = _Pace(len(todo), log)
            with _progress(len(todo), progress) as bar:
                for start in range(0, len(todo), EMBED_BATCH):
                    batch = todo[start : start + EMBED_BATCH]
                    role = chunks[batch[0]].role
                    if chunks[batch[-1]].role != role:  # the batch where the roles change: split it
                        batch = [i for i in batch if chunks[i].role == role]
                        rest = [i for i in todo[start : start + EMBED_BATCH] if chunks[i].role != role]
                    else:
                        rest = []
                    for part in (batch, rest):
                        if not part:
                            continue
                        vectors = encoder.encode([texts[i] for i in part], role=chunks[part[0]].role)  # type: ignore[attr-defined]
                        cache.put_many({keys[i]: v for i, v in zip(part, vectors)})
                        found.update({keys[i]: v for i, v in zip(part, vectors)})
                        bar.update(len(part))
                        pace.advance(len(part))
        vectors = np.vstack([found[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, dim or 384), np.float32)
    finally:
        cache.close()
    return vectors, len(missing)


def _publish(root: Path, cfg: Config, kb: KnowledgeBase, chunks: list[Chunk], vectors: np.ndarray, stamp: str) -> str:
    """Write a new version beside the others, then point CURRENT at it atomically; returns the version."""
    version = time.strftime("v%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    tmp = root / f".tmp-{version}"
    _crash_point("before-writing")
    tmp.mkdir(parents=True)
    _write_version(tmp, cfg, kb, chunks, vectors, stamp, cfg.model.name)
    os.rename(tmp, root / version)
    _fsync_dir(root)
    _crash_point("written")
    _write_atomic(root / CURRENT, version + "\n", crash_point="switching")
    _crash_point("switched")
    return version


def _write_version(folder: Path, cfg: Config, kb: KnowledgeBase, chunks: list[Chunk], vectors: np.ndarray,
                   stamp: str, model_id: str) -> None:
    import faiss

    faiss.write_index(make_faiss_index(vectors), str(folder / "vectors.faiss"))
    _crash_point("writing")
    db = sqlite_utils.Database(folder / "meta.db")
    with db.conn:
        db.table("entries").insert_all((_entry_row(e, kb) for e in kb.entries.values()), pk="id")
        db.table("chunks").insert_all(
            ({"id": i, "entry_id": c.entry_id, "section": c.section, "text": c.text, "role": c.role}
             for i, c in enumerate(chunks)),
            pk="id",
        )
        db.table("lexical").insert_all((_lexical_row(e) for e in kb.entries.values()), pk="entry_id")
        db.table("listings").create({"code": str, "name": str, "agency": str}, pk="code")  # may stay empty
        db.table("listings").insert_all((asdict(x) for x in kb.listings), pk="code")
        db.table("acronyms").create({"acronym": str, "phrase": str}, pk="acronym")  # may stay empty
        db.table("restore").create({"folded": str, "spelled": str}, pk="folded")
        db.table("acronyms").insert_all(
            ({"acronym": k, "phrase": v} for k, v in acronym_table(e.title for e in kb.entries.values()).items()),
            pk="acronym",
        )
        db.table("restore").insert_all(
            ({"folded": k, "spelled": v} for k, v in restoration_table(corpus_texts(kb)).items()), pk="folded"
        )
        db.table("settings").insert_all(
            [
                {"key": "synonyms", "value": json.dumps(kb.synonyms, ensure_ascii=False)},
                {"key": "links", "value": json.dumps([asdict(link) for link in kb.links.values()], ensure_ascii=False)},
                {"key": "hotline", "value": json.dumps(asdict(kb.hotline) if kb.hotline else None, ensure_ascii=False)},
            ],
            pk="key",
        )
    db.table("lexical").enable_fts(["title", "keywords", "body"], tokenize="unicode61 remove_diacritics 0 tokenchars '_.'")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    manifest = {
        "format": FORMAT,
        "version": folder.name.removeprefix(".tmp-"),
        "model": model_id,
        "dim": int(vectors.shape[1]),
        "entries": len(kb.entries),
        "chunks": len(chunks),
        "listings": len(kb.listings),
        "fingerprint": stamp,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": {name: _file_digest(folder / name) for name in INDEX_FILES},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _file_digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _remove_old_versions(root: Path, keep: set[str]) -> None:
    for path in root.iterdir():
        if path.is_dir() and path.name.startswith("v") and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Record(Entry):
    """An entry as the index serves it: the knowledge entry, with its online service link resolved."""

    online: Link | None = None


def _record(row: sqlite3.Row) -> Record:
    online = json.loads(row["online"]) if row["online"] else None
    return Record(id=row["id"], kind=row["kind"], path=row["path"], meta=json.loads(row["meta"] or "{}"),
                  summary=row["summary"], sections=tuple(Section(h, t, 0) for h, t in json.loads(row["sections"] or "[]")),
                  online=Link(**online) if online else None)


@dataclass
class IndexData:
    """An opened index version: vectors, chunk and entry metadata, dictionary and links."""

    version: str
    manifest: dict
    faiss_index: object
    chunk_entry: list[str]
    chunk_section: list[str]
    chunk_text: list[str]
    entries: dict[str, Record]
    synonyms: list[tuple[str, list[str]]]
    links: list[dict]
    hotline: dict | None
    restore: dict[str, str]
    acronyms: dict[str, str]
    db: sqlite3.Connection
    listings: dict[str, Listing] = field(default_factory=dict)  # by chunk entry id (danh-muc:<code>)


def versions(root: Path) -> list[str]:
    """Complete index versions on disk (those with a manifest), newest first."""
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if p.name.startswith("v") and (p / "manifest.json").is_file()]
    return sorted(found, reverse=True)


def open_index(cfg: Config, version: str | None = None) -> IndexData:
    """Open the serving index (or another version), refusing one built with another model or damaged.

    Every file is checked against the size and checksum its manifest recorded, so a damaged or half-copied
    index is refused with a message naming the file, never served.
    """
    import faiss

    root = cfg.index_root
    version = version or current_version(root)
    if version is None:
        raise IndexUnavailable(f"chưa có chỉ mục trong {root}: chạy `python index_builder.py` để xây")
    folder = root / version
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise IndexUnavailable(f"{path}: tệp mô tả chỉ mục hỏng ({e.__class__.__name__}): "
                               "chạy `python index_builder.py --force` để xây lại") from None
    if manifest.get("format") != FORMAT:
        raise IndexUnavailable(f"chỉ mục {version} có định dạng cũ: chạy `python index_builder.py` để xây lại")
    if manifest.get("model") != cfg.model.name:
        raise IndexUnavailable(
            f"chỉ mục {version} được xây bằng mô hình '{manifest.get('model')}' nhưng cấu hình dùng "
            f"'{cfg.model.name}': chạy `python index_builder.py` để xây lại"
        )
    rebuild = "chạy `python index_builder.py --force` để xây lại"
    for name, want in (manifest.get("files") or {}).items():
        if name not in INDEX_FILES:
            continue
        try:
            got = _file_digest(folder / name)
        except OSError as e:
            raise IndexUnavailable(f"{folder / name}: không đọc được ({e.strerror}): {rebuild}") from None
        if got != want:
            what = f"{got['bytes']} byte thay vì {want.get('bytes')}" if got["bytes"] != want.get("bytes") \
                else "sai mã kiểm tra sha256"
            raise IndexUnavailable(f"{folder / name}: tệp chỉ mục bị hỏng ({what}): {rebuild}")
    try:
        try:  # memory-mapped, read-only: the workers of `serve --workers N` share its pages
            index = faiss.read_index(str(folder / "vectors.faiss"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except RuntimeError:  # an index type FAISS cannot map: read it into memory
            index = faiss.read_index(str(folder / "vectors.faiss"))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1][:200] if str(e).strip() else "?"
        raise IndexUnavailable(f"{folder / 'vectors.faiss'}: không đọc được tệp vectơ ({reason}): {rebuild}") from None
    db_path = folder / "meta.db"
    if not db_path.is_file():
        raise IndexUnavailable(f"{db_path}: thiếu tệp: {rebuild}")
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    try:
        data = _read_meta(db, version, manifest, index)
    except (sqlite3.Error, ValueError, KeyError, TypeError) as e:
        db.close()
        raise IndexUnavailable(f"{db_path}: cơ sở dữ liệu chỉ mục hỏng ({e}): {rebuild}") from None
    if index.ntotal != len(data.chunk_entry) or index.d != manifest.get("dim", index.d):
        db.close()
        raise IndexUnavailable(f"{folder / 'vectors.faiss'}: có {index.ntotal} vectơ cỡ {index.d} nhưng chỉ mục ghi "
                               f"{len(data.chunk_entry)} đoạn cỡ {manifest.get('dim')}: {rebuild}")
    return data


def _read_meta(db: sqlite3.Connection, version: str, manifest: dict, index) -> IndexData:
    db.row_factory = sqlite3.Row
    rows = db.execute("select entry_id, section, text from chunks order by id").fetchall()
    entries = {row["id"]: _record(row) for row in db.execute("select * from entries")}
    settings = {row["key"]: json.loads(row["value"]) for row in db.execute("select key, value from settings")}
    return IndexData(
        version=version,
        manifest=manifest,
        faiss_index=index,
        chunk_entry=[r["entry_id"] for r in rows],
        chunk_section=[r["section"] for r in rows],
        chunk_text=[r["text"] for r in rows],
        entries=entries,
        synonyms=[(t, list(e)) for t, e in settings.get("synonyms", [])],
        links=settings.get("links", []),
        hotline=settings.get("hotline"),
        restore=dict(db.execute("select folded, spelled from restore").fetchall()),
        acronyms=dict(db.execute("select acronym, phrase from acronyms").fetchall()),
        db=db,
        listings={LISTING_PREFIX + r["code"]: Listing(r["code"], r["name"], r["agency"]) for r in
                  (db.execute("select code, name, agency from listings")
                   if db.execute("select 1 from sqlite_master where name = 'listings'").fetchone() else [])},
    )
