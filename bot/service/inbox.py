"""The inbox: platform events a channel has taken, by the platform's own id, in SQLite (or in the PostgreSQL store,
shared by every worker: a retry reaching another worker is still taken once) so that it survives a restart.

Zalo delivers an event again whenever it did not get a 200 in time, and keeps doing so for hours after an outage;
a captured event can also be replayed. Every correctly signed event is taken once: `take` says whether it is new.
The inbox is its own small database, apart from the question log, so that a question log locked by a long write
(a purge, a report) never holds up the acknowledgement a webhook owes its platform within seconds.

A citizen is stored as a keyed hash of their platform id (as in the question log), never the id itself; the inbox
remembers, for each citizen, their latest message, so that a later message to them (a staff reply) can be sent as a
reply to it.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .qlog import hash_key

KEEP_DAYS = 30  # events older than this are forgotten when the inbox opens (Zalo stops retrying within a day)


class Inbox:
    """Events taken by key, per channel; thread-safe (called from worker threads, never the event loop)."""

    def __init__(self, path: str | Path, secret: bytes, keep_days: int = KEEP_DAYS,
                 clock: Callable[[], float] = time.time, db: Any = None):
        self.path = Path(path)
        self.secret, self.clock = secret, clock
        self.shared = db is not None  # the PostgreSQL store (bot.service.store.PgDatabase): every worker's inbox
        if db is not None:
            self.db, self.lock = db, db.lock  # the table comes with the store's migrations
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.lock = threading.Lock()
            self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS events (channel TEXT NOT NULL, key TEXT NOT NULL, user_key "
                            "TEXT, sent_at REAL, taken_at REAL NOT NULL, status TEXT NOT NULL, PRIMARY KEY (channel, "
                            "key))")
            self.db.execute("CREATE INDEX IF NOT EXISTS events_user ON events (channel, user_key, sent_at)")
        # keys expire: older events are forgotten (Zalo stops retrying within a day)
        self.db.execute("DELETE FROM events WHERE taken_at < ?", [self.clock() - keep_days * 86400])

    @classmethod
    def open(cls, cfg, env: Mapping[str, str] | None = None, db: Any = None) -> Inbox:
        """The inbox of a deployment: <data>/log/inbox.db, or the PostgreSQL store `db` when given; user keys from
        $LOG_HASH_KEY or secrets/log.key, as the question log's."""
        return cls(cfg.data_dir / "log" / "inbox.db", hash_key(cfg.data_dir, dict(env) if env is not None else None),
                   db=db)

    def user_key(self, channel: str, user: str) -> str:
        """The pseudonym stored for a citizen (HMAC-SHA256 of the channel and their platform id)."""
        return hmac.new(self.secret, f"{channel}:{user}".encode("utf-8", "surrogatepass"),
                        hashlib.sha256).hexdigest()[:32]

    def take(self, channel: str, key: str, user: str = "", sent_at: float | None = None, status: str = "new") -> bool:
        """Remember an event; True when it is new, False when this key was taken before (a retry or a replay)."""
        with self.lock:
            cursor = self.db.execute(
                "INSERT INTO events (channel, key, user_key, sent_at, taken_at, status) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [channel, key, self.user_key(channel, user) if user else None, sent_at, self.clock(), status])
            return cursor.rowcount == 1

    def status(self, channel: str, key: str) -> str | None:
        """What became of an event (the status it was taken with), or None when it was never taken."""
        with self.lock:
            row = self.db.execute("SELECT status FROM events WHERE channel = ? AND key = ?", [channel, key]).fetchone()
        return row[0] if row else None

    def taken_at(self, channel: str, key: str) -> float | None:
        """When an event was taken (seconds since the epoch), or None when it never was."""
        with self.lock:
            row = self.db.execute("SELECT taken_at FROM events WHERE channel = ? AND key = ?", [channel, key]).fetchone()
        return float(row[0]) if row else None

    def latest(self, channel: str, user: str, since: float, prefix: str = "", status: str = "new") -> str | None:
        """The key (without `prefix`) of the citizen's latest event whose key starts with `prefix`, sent since a
        time (seconds since the epoch), or None."""
        with self.lock:
            row = self.db.execute(
                "SELECT key FROM events WHERE channel = ? AND user_key = ? AND sent_at >= ? AND status = ? "
                "AND substr(key, 1, ?) = ? ORDER BY sent_at DESC LIMIT 1",
                [channel, self.user_key(channel, user), since, status, len(prefix), prefix]).fetchone()
        return row[0][len(prefix):] if row else None

    def close(self) -> None:
        """Close the database (the shared store is closed by its owner)."""
        if self.shared:
            return
        with self.lock:
            self.db.close()
