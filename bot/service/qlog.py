"""The question log: every question a channel answered, masked and keyed pseudonymously, in SQLite.

Staff learn from it what citizens ask and what the bot could not answer (`python -m bot review`, `report`).
Personal data never reaches the disk: ID numbers, phone numbers and emails (and dossier codes unless configured)
are replaced by placeholders before a row is written, and a citizen is stored as a keyed hash of their channel id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.engine.answer import Answer
from bot.engine.privacy import mask
from bot.engine.text import clean, fold

from .store import PgDatabase, SchemaError, StoreUnavailable, open_pg

__all__ = ["SchemaError", "QuestionLog", "hash_key", "migrate", "stamp", "user_key"]
log = logging.getLogger("bot.qlog")

KEY_ENV = "LOG_HASH_KEY"  # not CCHC_…: those names are config overrides
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # UTC, sortable, understood by SQLite's date functions

def hash_key(data_dir: Path, env: dict[str, str] | None = None) -> bytes:
    """The secret of the pseudonymous user keys: $LOG_HASH_KEY, else one generated once into secrets/log.key."""
    env = dict(os.environ) if env is None else env
    if env.get(KEY_ENV):
        return env[KEY_ENV].encode("utf-8")
    path = data_dir / "secrets" / "log.key"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip().encode("ascii")
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="ascii").strip().encode("ascii")


def user_key(secret: bytes, channel: str, user: str) -> str:
    """A stable pseudonym of one citizen on one channel (HMAC-SHA256; the raw id cannot be recovered)."""
    # surrogatepass: an id from JSON may hold a lone surrogate ("\\ud800"); it still gets its own stable key
    return hmac.new(secret, f"{channel}:{user}".encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


def _now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    """A time as stored in the log (UTC)."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


# Schema migrations, in order; version N is reached by running the first N. Never rewrite a shipped step:
# add a new one. Steps only add tables and columns, so no row is ever lost.
def _v1(db: sqlite_utils.Database) -> None:
    db.table("questions").create({
        "id": int, "asked_at": str, "channel": str, "user_key": str, "question": str, "folded": str,
        "kind": str, "declined": int, "confidence": float, "entry_id": str, "title": str, "top_entries": str,
        "latency_ms": float, "feedback": int, "feedback_at": str,
    }, pk="id")
    db.table("questions").create_index(["asked_at"])
    db.table("questions").create_index(["user_key", "channel"])


def _v2(db: sqlite_utils.Database) -> None:
    db.table("tickets").create({
        "id": int, "opened_at": str, "channel": str, "user_key": str, "address": str, "reason": str,
        "question_id": int, "turns": str, "status": str, "staff_ref": str, "updated_at": str,
    }, pk="id")
    db.table("tickets").create_index(["status"])
    db.table("tickets").create_index(["staff_ref"])
    db.table("ticket_messages").create({"id": int, "ticket_id": int, "at": str, "sender": str, "text": str},
                                 pk="id", foreign_keys=[("ticket_id", "tickets", "id")])
    db.table("ticket_messages").create_index(["ticket_id"])


def _v3(db: sqlite_utils.Database) -> None:
    db.table("ticket_messages").add_column("delivered_at", str)  # staff replies work as an outbox per channel


def _v4(db: sqlite_utils.Database) -> None:
    db.table("ticket_messages").add_column("claimed_at", str)  # a courier claims a reply before sending it


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_v1, _v2, _v3, _v4)


def migrate(db: sqlite_utils.Database, migrations: Sequence[Callable[[sqlite_utils.Database], None]] = MIGRATIONS) -> int:
    """Bring the schema to the latest version, one step per transaction; returns the version reached."""
    while True:
        db.conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see the new version
        try:
            version = db.conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(migrations):
                raise SchemaError(f"question log schema version {version} is newer than this bot "
                                  f"(knows {len(migrations)}): update the bot")
            if version == len(migrations):
                db.conn.execute("COMMIT")
                return version
            migrations[version](db)
            db.conn.execute(f"PRAGMA user_version = {version + 1}")
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise


class QuestionLog:
    """The question log of `bot.service.desk.QuestionSink`, over SQLite (WAL) through sqlite-utils, or over the
    PostgreSQL store (`db`); thread-safe.

    Over PostgreSQL a question that cannot be written (the server restarting) is retried for `[store]`'s retry time,
    then spooled to `<data>/log/spool/` and written with the next question that goes through: none is lost."""

    def __init__(self, path: str | Path, secret: bytes, keep_dossier_codes: bool = False,
                 clock: Callable[[], datetime] = _now, db: PgDatabase | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.secret, self.keep_dossier_codes, self.clock = secret, keep_dossier_codes, clock
        self.kind = "sqlite" if db is None else db.kind
        self.spool = self.path.parent / "spool"
        self._spool_lock = threading.Lock()
        if db is None:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self.db: Any = sqlite_utils.Database(conn)
            self.db.enable_wal()
            self.db.execute("PRAGMA foreign_keys = ON")
            self.lock: Any = threading.RLock()
            self.version = migrate(self.db)
        else:
            self.db, self.lock, self.version = db, db.lock, db.version
            self.flush_spool()

    @classmethod
    def open(cls, cfg, env: dict[str, str] | None = None, db: PgDatabase | None = None) -> QuestionLog:
        """The log of a deployment: <data>/log/questions.db, or the PostgreSQL store of `[store] url`; user keys
        from $LOG_HASH_KEY or secrets/log.key (every worker of a deployment needs the same key)."""
        return cls(cfg.data_dir / "log" / "questions.db", hash_key(cfg.data_dir, env),
                   keep_dossier_codes=cfg.log.keep_dossier_codes, db=db if db is not None else open_pg(cfg))

    def mask(self, text: str) -> str:
        """Personal data replaced by placeholders, as every stored text is."""
        return mask(text, self.keep_dossier_codes)

    def user_key(self, channel: str, user: str) -> str:
        """The pseudonym stored for a citizen."""
        return user_key(self.secret, channel, str(user))

    def record(self, *, channel: str, user: str, question: str, answer: Answer, latency_ms: float) -> int | None:
        """Store one answered question (masked); returns its id for feedback."""
        text = self.mask(clean(question or ""))
        row = {
            "asked_at": stamp(self.clock()), "channel": channel, "user_key": self.user_key(channel, user),
            "question": text, "folded": fold(text), "kind": answer.kind, "declined": int(not answer.answered),
            "confidence": round(float(answer.confidence), 4), "entry_id": answer.entry_id,
            "title": answer.title or None,
            "top_entries": json.dumps([s.id for s in answer.sources], ensure_ascii=False),
            "latency_ms": round(float(latency_ms), 1), "feedback": None, "feedback_at": None,
        }
        if self.kind == "sqlite":
            with self.lock:
                return self.db.table("questions").insert(row).last_rowid
        try:
            if self.db.down:  # the server is restarting: do not hold the citizen's answer for it
                raise StoreUnavailable(f"{self.db.where} không trả lời")
            question_id = self.db.table("questions").insert(row).last_rowid
        except StoreUnavailable as e:  # retried already: keep the row on disk, written when the store is back
            self._spool_row(row)
            log.error("nhật ký chưa ghi được (%s); câu hỏi được giữ trong %s", e, self.spool)
            return None
        if self._spooled():
            self.flush_spool()
        return question_id

    def _spool_file(self) -> Path:
        return self.spool / f"questions-{os.getpid()}.jsonl"

    def _spool_row(self, row: dict[str, Any]) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._spool_lock, open(self._spool_file(), "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def _spooled(self) -> bool:
        return self.spool.is_dir() and any(self.spool.glob("questions-*.jsonl"))

    def flush_spool(self) -> int:
        """Write the questions spooled while the store was down (by any worker of this machine); returns how many.
        Each file is first renamed, so two workers never write the same one."""
        written = 0
        if not self.spool.is_dir():
            return 0
        with self._spool_lock:
            for path in sorted(self.spool.glob("questions-*.jsonl")):
                taken = path.with_name(f"taking-{os.getpid()}-{path.name}")
                try:
                    path.rename(taken)
                except FileNotFoundError:
                    continue  # another worker took it
                rows = [json.loads(line) for line in taken.read_text(encoding="utf-8").splitlines() if line.strip()]
                try:
                    with self.db.atomic():
                        for row in rows:
                            self.db.table("questions").insert(row)
                except Exception:
                    taken.rename(path.with_name(f"questions-{os.getpid()}-again-{taken.stat().st_mtime_ns}.jsonl"))
                    raise
                taken.unlink()
                written += len(rows)
        if written:
            log.warning("đã ghi %d câu hỏi giữ lại khi kho dữ liệu không trả lời", written)
        return written

    def feedback(self, question_id: int, value: int, *, channel: str | None = None, user: str | None = None) -> bool:
        """Record 👍 (+1) or 👎 (-1) on a stored question; False for an unknown id or another value.

        With `channel` (and `user`), only a question asked on that channel (by that citizen) is rated: the channels
        pass them, so that nobody rates another citizen's answer."""
        if value not in (1, -1) or isinstance(value, bool):
            return False
        try:
            question_id = int(question_id)
        except (TypeError, ValueError):
            return False
        sql, params = "UPDATE questions SET feedback = ?, feedback_at = ? WHERE id = ?", [value, stamp(self.clock()),
                                                                                          question_id]
        if channel is not None:
            sql, params = sql + " AND channel = ?", params + [channel]
        if user is not None:
            sql, params = sql + " AND user_key = ?", params + [self.user_key(channel or "", user)]
        with self.lock:
            return self.db.execute(sql, params).rowcount > 0

    def answer_token(self, question_id: int) -> str:
        """An unguessable token for one stored answer (a keyed hash of its id): whoever was given the answer holds
        it, and only they can rate it on a channel without accounts (the web chat)."""
        return hmac.new(self.secret, f"answer:{int(question_id)}".encode(), hashlib.sha256).hexdigest()[:32]

    def address_token(self, channel: str, address: str) -> str:
        """An unguessable token for a citizen's address on a channel without accounts: it fetches their staff
        replies."""
        return hmac.new(self.secret, f"address:{channel}:{address}".encode("utf-8", "surrogatepass"),
                        hashlib.sha256).hexdigest()[:32]

    def question(self, question_id: int) -> dict[str, Any] | None:
        """One stored question as a dict, or None."""
        with self.lock:
            rows = list(self.db.query("SELECT * FROM questions WHERE id = ?", [question_id]))
        return rows[0] if rows else None

    def questions(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Stored questions, oldest first (all of them, or those asked since a time)."""
        with self.lock:
            if since is None:
                return list(self.db.query("SELECT * FROM questions ORDER BY id"))
            return list(self.db.query("SELECT * FROM questions WHERE asked_at >= ? ORDER BY id", [stamp(since)]))

    def last_turns(self, channel: str, user: str, count: int = 5) -> list[dict[str, Any]]:
        """The last questions of one citizen on one channel, oldest first."""
        with self.lock:
            rows = list(self.db.query(
                "SELECT id, asked_at, question, kind, title, confidence, feedback FROM questions "
                "WHERE user_key = ? AND channel = ? ORDER BY id DESC LIMIT ?",
                [self.user_key(channel, user), channel, count]))
        return rows[::-1]

    def ticket_count(self, since: datetime | None = None) -> int:
        """How many handoff tickets were opened (all of them, or since a time)."""
        with self.lock:
            return self.db.execute("SELECT count(*) FROM tickets WHERE opened_at >= ?",
                                   [stamp(since) if since else ""]).fetchone()[0]

    def purge(self, days: int) -> dict[str, int]:
        """Delete questions (and closed tickets) older than `days` days; returns how many rows of each went."""
        cutoff = stamp(self.clock() - timedelta(days=days))
        with self.lock, self.db.atomic():
            old = [r[0] for r in self.db.execute(
                "SELECT id FROM tickets WHERE updated_at < ? AND status = 'closed'", [cutoff]).fetchall()]
            for start in range(0, len(old), 500):
                chunk = old[start:start + 500]
                marks = ",".join("?" * len(chunk))
                self.db.execute(f"DELETE FROM ticket_messages WHERE ticket_id IN ({marks})", chunk)
                self.db.execute(f"DELETE FROM tickets WHERE id IN ({marks})", chunk)
            questions = self.db.execute("DELETE FROM questions WHERE asked_at < ?", [cutoff]).rowcount
        return {"questions": questions, "tickets": len(old)}

    def close(self) -> None:
        """Close the database."""
        with self.lock:
            self.db.close()
