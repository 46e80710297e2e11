"""A real PostgreSQL 15 for the tests: a private cluster in a temporary folder, on a free port.

postgres refuses to run as root, so as root (CI) the cluster belongs to the `postgres` user and its commands run
through `runuser -u postgres --`. TCP connections need a password (scram-sha-256), as in production, so the tests
also see what a wrong password does; the password travels only in the environment.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
USER, PASSWORD = "cchc", "s3cret-pw-Zq9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """One throwaway cluster: `url(db)` without the password, `env` with it, `stop`/`start`/`restart`."""

    def __init__(self) -> None:
        if not (BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL binaries not found in {BIN}: apt-get install postgresql-15 (or set PG_BIN)")
        self.root = Path(tempfile.mkdtemp(prefix="cchc-pg-"))
        self.data, self.port = self.root / "data", free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres")
            self.root.chmod(0o755)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_root:
            shutil.chown(pwfile, "postgres")
        self._run([str(BIN / "initdb"), "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile), "-E", "UTF8",
                   "--locale", "C", "--auth-host", "scram-sha-256", "--auth-local", "trust", "--no-sync"])
        pwfile.unlink()
        self.start()

    def _run(self, argv: list[str]) -> None:
        if self.as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run([str(BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w",
                   "start"])

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (fast: every open connection is cut)."""
        self._run([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down `down_s` seconds, start again."""
        self.stop()
        time.sleep(down_s)
        self.start()

    @property
    def env(self) -> dict[str, str]:
        """The environment a client needs for the password."""
        return {"PGPASSWORD": PASSWORD}

    def url(self, dbname: str = "postgres", password: bool = False) -> str:
        """A connection URL (with the password only when asked)."""
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A fresh empty database; returns its URL (without the password)."""
        import psycopg

        with psycopg.connect(self.url(password=True), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop the server and delete the cluster."""
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
