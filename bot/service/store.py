"""The store: where the state that several workers share lives, on one of two backends.

SQLite (the default, `[store] url = ""`) keeps everything in files of the data folder, for one process on one
machine: the question log and tickets in `<data>/log/questions.db`, the Zalo inbox in `<data>/log/inbox.db`.
PostgreSQL (`[store] url` or `$CCHC_STORE_URL`, through psycopg 3 and psycopg_pool) holds the same tables in one
database that every worker on every machine opens, plus what a single process used to keep in memory:
conversations (with a time-to-live), rate-limit windows, Telegram callback tokens and the Zalo token pair.

`PgDatabase` speaks the small part of `sqlite_utils.Database` the log and the handoff use (`execute`, `query`,
`table(name).insert`, `atomic`), with `?` placeholders, so the SQL is written once. The password is never printed:
`where(url)` names a database by user, host, port and name only, and every error message is scrubbed of it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

log = logging.getLogger("bot.store")

DOWN_WAIT = 0.2  # seconds a statement waits for a connection while the server is known to be down
MIGRATION_LOCK = 4_715_001  # pg_advisory_xact_lock key: one worker migrates, the others wait and then see it done


class StoreError(RuntimeError):
    """A statement of the store failed; the message names the database, never its password."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or used (down, wrong URL, refused): the message names it, never the password."""


class StoreBusy(StoreError):
    """Every connection of the pool stayed busy past `[store] pool_timeout`: the citizen gets the busy reply."""


class SchemaError(RuntimeError):
    """The database was written by a newer version of the bot."""


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a failing store raises, on either backend (for `except`)."""
    import sqlite3

    return (sqlite3.Error, OSError, StoreError)


def _parts(url: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def where(url: str) -> str:
    """A database named for people: 'PostgreSQL cchc@db.example:5432/cchc', never with its password."""
    try:
        parts = _parts(url)
    except Exception:
        return "PostgreSQL (URL không đọc được)"
    user = parts.get("user", "")
    host = parts.get("host", "localhost")
    return f"PostgreSQL {user + '@' if user else ''}{host}:{parts.get('port', '5432')}/{parts.get('dbname', '')}"


def scrub(text: str, url: str) -> str:
    """`text` with the URL's password (and the URL itself) taken out."""
    secrets = [url]
    with contextlib.suppress(Exception):
        secrets.append(_parts(url).get("password", ""))
    if "://" in url and "@" in url:  # the URL could not be parsed: take what sits between ':' and '@'
        userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
        if ":" in userinfo:
            secrets.append(userinfo.split(":", 1)[1])
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def has_password(url: str) -> bool:
    """True when a connection URL carries a password."""
    try:
        return bool(_parts(url).get("password"))
    except Exception:
        return "@" in url and ":" in url.split("://", 1)[-1].rsplit("@", 1)[0]


def _pg(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (the SQL of this project holds no `?` or `%` in literals)."""
    return sql.replace("%", "%%").replace("?", "%s")


class NoLock:
    """A lock that never waits: code written for SQLite takes `log.lock`; over PostgreSQL it need not."""

    def __enter__(self) -> NoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Result:
    """What `execute` returns: the rows (fetched at once, as tuples), their column names and the row count."""

    def __init__(self, rows: list[tuple], columns: list[str], rowcount: int):
        self.rows, self.columns, self.rowcount = rows, columns, rowcount
        self._at = 0

    def fetchone(self) -> tuple | None:
        """The next row, or None."""
        if self._at >= len(self.rows):
            return None
        self._at += 1
        return self.rows[self._at - 1]

    def fetchall(self) -> list[tuple]:
        """The rows not fetched yet."""
        rest, self._at = self.rows[self._at:], len(self.rows)
        return rest

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.fetchall())


class _Inserted:
    def __init__(self, last_rowid: int | None):
        self.last_rowid = last_rowid


class _Table:
    def __init__(self, db: PgDatabase, name: str):
        self.db, self.name = db, name

    def insert(self, row: dict[str, Any]) -> _Inserted:
        """Insert one row; its id comes back as `last_rowid`."""
        columns = list(row)
        sql = (f"INSERT INTO {self.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
               "RETURNING id")
        found = self.db.execute(sql, [row[c] for c in columns]).fetchone()
        return _Inserted(found[0] if found else None)


# Schema migrations of the PostgreSQL store, in order; version N is reached by running the first N. Never rewrite a
# shipped step: add one. The SQLite store's steps are in bot.service.qlog (log and tickets) and bot.service.inbox.
PG_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE questions (id BIGSERIAL PRIMARY KEY, asked_at TEXT, channel TEXT, user_key TEXT, question TEXT,
        folded TEXT, kind TEXT, declined INTEGER, confidence DOUBLE PRECISION, entry_id TEXT, title TEXT,
        top_entries TEXT, latency_ms DOUBLE PRECISION, feedback INTEGER, feedback_at TEXT);
    CREATE INDEX idx_questions_asked_at ON questions (asked_at);
    CREATE INDEX idx_questions_user_key_channel ON questions (user_key, channel);
    CREATE TABLE tickets (id BIGSERIAL PRIMARY KEY, opened_at TEXT, channel TEXT, user_key TEXT, address TEXT,
        reason TEXT, question_id BIGINT, turns TEXT, status TEXT, staff_ref TEXT, updated_at TEXT);
    CREATE INDEX idx_tickets_status ON tickets (status);
    CREATE INDEX idx_tickets_staff_ref ON tickets (staff_ref);
    CREATE TABLE ticket_messages (id BIGSERIAL PRIMARY KEY, ticket_id BIGINT REFERENCES tickets (id), at TEXT,
        sender TEXT, text TEXT, delivered_at TEXT, claimed_at TEXT);
    CREATE INDEX idx_ticket_messages_ticket_id ON ticket_messages (ticket_id);
    CREATE TABLE events (channel TEXT NOT NULL, key TEXT NOT NULL, user_key TEXT, sent_at DOUBLE PRECISION,
        taken_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL, PRIMARY KEY (channel, key));
    CREATE INDEX events_user ON events (channel, user_key, sent_at);
    CREATE INDEX events_taken ON events (taken_at);
    CREATE TABLE conversations (key TEXT PRIMARY KEY, last_entry TEXT, expires_at DOUBLE PRECISION NOT NULL);
    CREATE INDEX conversations_expiry ON conversations (expires_at);
    CREATE TABLE rate_hits (key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
    CREATE INDEX rate_hits_key ON rate_hits (key, at);
    CREATE TABLE callback_tokens (token TEXT PRIMARY KEY, question TEXT NOT NULL, created_at DOUBLE PRECISION);
    CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL, origin TEXT, saved_at DOUBLE PRECISION);
    """,
)


class PgDatabase:
    """PostgreSQL through a psycopg_pool pool, with the calls of `sqlite_utils.Database` the service uses.

    Thread-safe: each call takes a connection from the pool (waiting at most `pool_timeout` seconds, else
    `StoreBusy`); inside `atomic()` the calls of that thread share one connection and one transaction. A statement
    outside a transaction whose connection broke (the server restarted) is sent again on a fresh connection for up
    to `retry_s` seconds; after that, or when the server cannot be reached, `StoreUnavailable`.
    """

    kind = "postgres"

    def __init__(self, url: str, *, pool_size: int = 10, pool_timeout: float = 2.0, connect_timeout: int = 5,
                 retry_s: float = 10.0, migrations: Sequence[str] = PG_MIGRATIONS, name: str = "cchc"):
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url, self.where = url, where(url)
        self.pool_timeout, self.retry_s = pool_timeout, retry_s
        self._local = threading.local()
        self.lock = NoLock()  # PostgreSQL serialises what must be: no process-wide lock around its calls
        try:  # one plain connection first: a clear error at start instead of a pool retrying in the background
            with psycopg.connect(url, connect_timeout=connect_timeout, autocommit=True) as first:
                self.version = migrate_pg(first, migrations, self.where)
        except psycopg.Error as e:
            raise StoreUnavailable(f"không kết nối được {self.where}: {scrub(str(e).strip(), url)}") from None
        self.pool = ConnectionPool(url, min_size=1, max_size=max(1, pool_size), timeout=pool_timeout, name=name,
                                   kwargs={"autocommit": True, "connect_timeout": connect_timeout},
                                   check=ConnectionPool.check_connection, open=False, reconnect_timeout=0)
        self.pool.open(wait=False)
        self._errors_seen = 0
        # Set when the server stopped answering, cleared by the next statement that goes through: meanwhile a
        # statement waits at most DOWN_WAIT for a connection, so that a citizen is answered (without shared
        # context, the log spooled) instead of waiting on a server that is restarting.
        self.down = False

    # --- connections ---

    @contextlib.contextmanager
    def _connection(self):
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection(timeout=min(self.pool_timeout, DOWN_WAIT) if self.down
                                      else self.pool_timeout) as conn:
                yield conn
        except PoolTimeout:
            errors = self.pool.get_stats().get("connections_errors", 0)
            failing, self._errors_seen = errors > self._errors_seen, errors
            if failing or self.down:  # the pool failed to open connections meanwhile: the server is down, not busy
                self.down = True
                raise StoreUnavailable(f"{self.where} không trả lời") from None
            raise StoreBusy(f"{self.where}: mọi kết nối đều bận quá {self.pool_timeout:g} giây") from None

    @contextlib.contextmanager
    def atomic(self):
        """One transaction for the calls of this thread inside the block (nested blocks join the outer one)."""
        import psycopg

        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with conn.transaction():
                yield
            return
        try:
            with self._connection() as conn:
                self._local.conn = conn
                try:
                    with conn.transaction():
                        yield
                finally:
                    self._local.conn = None
        except psycopg.OperationalError as e:
            self.down = True
            raise StoreUnavailable(f"{self.where}: {scrub(str(e).strip(), self.url)}") from None
        except psycopg.Error as e:
            raise StoreError(f"{self.where}: {scrub(str(e).strip(), self.url)}") from None

    def execute(self, sql: str, params: Sequence[Any] | dict = (), retry_s: float | None = None) -> Result:
        """Run one statement (`?` placeholders); its rows come back fetched. Outside a transaction, a connection
        lost is replaced and the statement sent again for up to `retry_s` seconds (default: the database's)."""
        import psycopg

        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return self._run(conn, sql, params)
        deadline = time.monotonic() + (self.retry_s if retry_s is None else retry_s)
        was_down = self.down  # a call made while the server is known down tries once, briefly
        pause = 0.1
        while True:
            try:
                with self._connection() as conn:
                    result = self._run(conn, sql, params)
                self.down = False
                return result
            except psycopg.OperationalError as e:
                self.down = True
                problem = scrub(str(e).strip(), self.url)
            except psycopg.Error as e:
                raise StoreError(f"{self.where}: {scrub(str(e).strip(), self.url)}") from None
            except StoreUnavailable as e:
                problem = str(e)
            # A connection broken by a server restart, or none to be had yet: send the statement again. (A statement
            # whose connection broke after the server ran it would run twice: a log row may then be doubled.)
            if time.monotonic() + pause > deadline or (was_down and self.down):
                raise StoreUnavailable(f"{self.where}: {problem}")
            log.warning("%s: %s; thử lại", self.where, problem)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    @staticmethod
    def _run(conn, sql: str, params) -> Result:
        cursor = conn.execute(_pg(sql), params)
        columns = [c.name for c in cursor.description] if cursor.description else []
        rows = cursor.fetchall() if cursor.description else []
        return Result(rows, columns, cursor.rowcount)

    def query(self, sql: str, params: Sequence[Any] | dict = (), retry_s: float | None = None
              ) -> Iterator[dict[str, Any]]:
        """The rows of a query, as dicts."""
        result = self.execute(sql, params, retry_s)
        return iter([dict(zip(result.columns, row)) for row in result.rows])

    def table(self, name: str) -> _Table:
        """A table to insert into."""
        return _Table(self, name)

    @contextlib.contextmanager
    def advisory_lock(self, key: int):
        """Hold a PostgreSQL advisory lock (every worker on every machine waits for it) within one transaction."""
        with self.atomic():
            self.execute("SELECT pg_advisory_xact_lock(?)", [key])
            yield

    def close(self) -> None:
        """Close the pool."""
        self.pool.close()


def migrate_pg(conn, migrations: Sequence[str] = PG_MIGRATIONS, name: str = "PostgreSQL") -> int:
    """Bring a PostgreSQL store to the latest schema under an advisory lock; returns the version reached. A database
    whose schema is newer than this code raises SchemaError."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        version = row[0] if row else 0
        if version > len(migrations):
            raise SchemaError(f"{name}: lược đồ phiên bản {version} mới hơn bản bot này (biết tới "
                              f"{len(migrations)}): hãy cập nhật bot trước khi chạy")
        for step in range(version, len(migrations)):
            conn.execute(migrations[step])
            conn.execute("UPDATE schema_version SET version = %s", [step + 1])
        return len(migrations)


def open_pg(cfg, env: dict[str, str] | None = None) -> PgDatabase | None:
    """The PostgreSQL store a deployment names (`[store] url`), or None for the embedded SQLite files."""
    if not cfg.store.url:
        return None
    s = cfg.store
    return PgDatabase(s.url, pool_size=s.pool_size, pool_timeout=s.pool_timeout, connect_timeout=s.connect_timeout)


def retrying(fn: Callable[[], Any], seconds: float, errors: tuple[type[BaseException], ...]) -> Any:
    """`fn()`, called again with growing pauses while it raises one of `errors`, for at most `seconds`."""
    deadline, pause = time.monotonic() + seconds, 0.1
    while True:
        try:
            return fn()
        except errors:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


class SharedState:
    """What a single process kept in memory, in the PostgreSQL store so that every worker sees it: conversations
    (forgotten after `ttl` seconds), rate-limit windows and Telegram callback tokens. Citizens appear under a keyed
    hash of their id, as in the question log."""

    def __init__(self, db: PgDatabase, secret: bytes, ttl: float = 86400.0, clock: Callable[[], float] = time.time,
                 retry_s: float = 1.0):
        self.db, self.secret, self.ttl, self.clock, self.retry_s = db, secret, ttl, clock, retry_s
        self._writes = 0

    def key(self, key: str) -> str:
        """The stored name of a citizen's key ('channel:user')."""
        import hashlib
        import hmac

        return hmac.new(self.secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]

    def _sometimes_sweep(self, sql: str, params: list[Any]) -> None:
        self._writes += 1
        if self._writes % 1000 == 0:  # expired rows of citizens who never came back
            self.db.execute(sql, params, retry_s=self.retry_s)

    def conversation(self, key: str) -> str | None:
        """The entry a citizen's conversation is about, unless it lapsed."""
        rows = self.db.execute("SELECT last_entry FROM conversations WHERE key = ? AND expires_at > ?",
                               [self.key(key), self.clock()], retry_s=self.retry_s).rows
        return rows[0][0] if rows else None

    def save_conversation(self, key: str, last_entry: str | None) -> None:
        """Remember what a citizen's conversation is about, for `ttl` seconds from now."""
        now = self.clock()
        self.db.execute("INSERT INTO conversations (key, last_entry, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) "
                        "DO UPDATE SET last_entry = excluded.last_entry, expires_at = excluded.expires_at",
                        [self.key(key), last_entry, now + self.ttl], retry_s=self.retry_s)
        self._sometimes_sweep("DELETE FROM conversations WHERE expires_at < ?", [now])

    def rate_wait(self, key: str, count: int, seconds: float) -> float:
        """0 when the citizen may ask now (the question is counted), else the seconds to wait: at most `count`
        questions per `seconds`, over every worker (one advisory lock per citizen makes the check and the count one
        step)."""
        if count <= 0:
            return 0.0
        stored, now = self.key(key), self.clock()
        with self.db.atomic():
            self.db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [stored])
            self.db.execute("DELETE FROM rate_hits WHERE key = ? AND at <= ?", [stored, now - seconds])
            found, first = self.db.execute("SELECT count(*), min(at) FROM rate_hits WHERE key = ?", [stored]).rows[0]
            if found >= count:
                return max(0.0, seconds - (now - first))
            self.db.execute("INSERT INTO rate_hits (key, at) VALUES (?, ?)", [stored, now])
        self._sometimes_sweep("DELETE FROM rate_hits WHERE at < ?", [now - seconds])
        return 0.0

    def remember_question(self, token: str, question: str) -> None:
        """A callback token standing for a question too long for a button."""
        self.db.execute("INSERT INTO callback_tokens (token, question, created_at) VALUES (?, ?, ?) ON CONFLICT "
                        "(token) DO UPDATE SET created_at = excluded.created_at", [token, question, self.clock()],
                        retry_s=self.retry_s)
        self._sometimes_sweep("DELETE FROM callback_tokens WHERE created_at < ?", [self.clock() - 30 * 86400])

    def question_for(self, token: str) -> str | None:
        """The question a callback token stands for, or None."""
        rows = self.db.execute("SELECT question FROM callback_tokens WHERE token = ?", [token],
                               retry_s=self.retry_s).rows
        return rows[0][0] if rows else None


class SharedRateLimit:
    """`bot.service.desk.RateLimit` over the store: the same window whichever worker a question reaches."""

    def __init__(self, state: SharedState, count: int, seconds: float):
        self.state, self.count, self.seconds = state, count, seconds

    def wait(self, user: str) -> float:
        """0 when the user may ask now (and counts the question); else the seconds to wait."""
        return self.state.rate_wait(user, self.count, self.seconds)
