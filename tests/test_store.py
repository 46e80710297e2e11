"""The PostgreSQL store, against a real PostgreSQL 15 (tests/pg.py): migrations, the refusal of a newer schema,
errors that name the database without its password, the shared state, claims that deliver once."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import pytest

from bot.config import ConfigError, load_config
from bot.engine.answer import Answer
from bot.service.handoff import Courier, Handoff
from bot.service.inbox import Inbox
from bot.service.qlog import QuestionLog
from bot.service.store import (
    PG_MIGRATIONS,
    PgDatabase,
    SchemaError,
    SharedState,
    StoreBusy,
    StoreUnavailable,
    where,
)
from tests.pg import PASSWORD, USER, free_port

SECRET = b"k" * 32


def test_migrations_run_once_and_a_newer_schema_refuses_to_start(pg_url):
    import psycopg

    db = PgDatabase(pg_url)
    assert db.version == len(PG_MIGRATIONS)
    db.close()
    again = PgDatabase(pg_url)  # a second worker: nothing to do
    assert again.version == len(PG_MIGRATIONS)
    again.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", [len(PG_MIGRATIONS) + 1])
    with pytest.raises(SchemaError, match=f"phiên bản {len(PG_MIGRATIONS) + 1} mới hơn"):
        PgDatabase(pg_url)


def test_workers_starting_together_migrate_once(pg_url):
    opened, errors = [], []

    def start():
        try:
            opened.append(PgDatabase(pg_url, pool_size=1))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 4
    for db in opened:
        db.close()


def test_a_database_that_is_down_names_the_host_never_the_password():
    port = free_port()  # nothing listens there
    url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/cchc"
    with pytest.raises(StoreUnavailable) as caught:
        PgDatabase(url, connect_timeout=2)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and PASSWORD not in message


def test_a_wrong_password_or_url_gets_the_same_kind_of_error(postgres):
    wrong = f"postgresql://{USER}:not-the-{PASSWORD}@127.0.0.1:{postgres.port}/postgres"
    with pytest.raises(StoreUnavailable) as caught:
        PgDatabase(wrong)
    assert f"127.0.0.1:{postgres.port}" in str(caught.value) and "not-the" not in str(caught.value)
    assert "password authentication failed" in str(caught.value)
    for bad in (f"postgresql://{USER}:{PASSWORD}@127.0.0.1:notaport/x", f"postgresql://{USER}:{PASSWORD}@no.such.host.invalid/x"):
        with pytest.raises(StoreUnavailable) as caught:
            PgDatabase(bad, connect_timeout=2)
        assert PASSWORD not in str(caught.value), caught.value
    assert PASSWORD not in where(f"postgresql://{USER}:{PASSWORD}@h:1/d")


def test_a_password_in_config_toml_is_refused_and_the_environment_may_hold_it(tmp_path):
    (tmp_path / "config.toml").write_text(f'[store]\nurl = "postgresql://{USER}:{PASSWORD}@db:5432/cchc"\n')
    with pytest.raises(ConfigError, match="must not hold a password") as caught:
        load_config(tmp_path / "config.toml", env={})
    assert PASSWORD not in str(caught.value)
    (tmp_path / "config.toml").write_text('[store]\nurl = "postgresql://cchc@db:5432/cchc"\n')
    assert load_config(tmp_path / "config.toml", env={}).store.url == "postgresql://cchc@db:5432/cchc"
    env = {"CCHC_STORE_URL": f"postgresql://{USER}:{PASSWORD}@db/cchc"}
    assert load_config(tmp_path / "config.toml", env=env).store.url == env["CCHC_STORE_URL"]


def test_a_full_pool_waits_with_a_bound_then_says_busy(pg_url):
    db = PgDatabase(pg_url, pool_size=1, pool_timeout=0.5)
    held = threading.Event()
    release = threading.Event()

    def hold():
        with db.atomic():
            db.execute("SELECT 1")
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    started = time.monotonic()
    with pytest.raises(StoreBusy):
        db.execute("SELECT 1")
    waited = time.monotonic() - started
    release.set()
    holder.join()
    assert 0.4 <= waited < 3.0
    assert db.execute("SELECT 1").rows == [(1,)]
    db.close()


def test_conversations_expire_and_rate_limits_hold_across_workers(pg_url):
    clock = [1000.0]
    one, two = PgDatabase(pg_url), PgDatabase(pg_url)  # two workers
    a = SharedState(one, SECRET, ttl=60, clock=lambda: clock[0])
    b = SharedState(two, SECRET, ttl=60, clock=lambda: clock[0])
    a.save_conversation("zalo:u1", "khai-sinh")
    assert b.conversation("zalo:u1") == "khai-sinh"
    clock[0] += 61
    assert b.conversation("zalo:u1") is None
    waits = [(a if n % 2 else b).rate_wait("web:x", 3, 60) for n in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] == pytest.approx(60.0)
    clock[0] += 60.5
    assert a.rate_wait("web:x", 3, 60) == 0.0
    a.remember_question("t:abc", "một câu hỏi rất dài")
    assert b.question_for("t:abc") == "một câu hỏi rất dài" and b.question_for("t:none") is None
    rows = one.execute("SELECT key FROM conversations").rows
    assert rows and all("u1" not in r[0] for r in rows)  # citizens are stored as keyed hashes
    one.close()
    two.close()


def test_rate_limit_counts_exactly_under_concurrency(pg_url):
    dbs = [PgDatabase(pg_url, pool_size=4) for _ in range(2)]
    states = [SharedState(db, SECRET) for db in dbs]
    allowed = []

    def ask(n):
        allowed.append(states[n % 2].rate_wait("zalo:burst", 5, 60) == 0.0)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 5
    for db in dbs:
        db.close()


def test_dedupe_keys_are_shared_and_expire(pg_url, tmp_path):
    clock = [time.time()]
    one, two = PgDatabase(pg_url), PgDatabase(pg_url)
    first = Inbox(tmp_path / "unused.db", SECRET, db=one, clock=lambda: clock[0])
    second = Inbox(tmp_path / "unused.db", SECRET, db=two, clock=lambda: clock[0])
    assert first.take("zalo", "msg:1", "u", clock[0]) is True
    assert second.take("zalo", "msg:1", "u", clock[0]) is False  # the retry reached the other worker
    assert second.latest("zalo", "u", clock[0] - 10, "msg:") == "1"
    clock[0] += 31 * 86400
    Inbox(tmp_path / "unused.db", SECRET, db=two, clock=lambda: clock[0])  # opening forgets expired keys
    assert second.take("zalo", "msg:1", "u", clock[0]) is True
    assert not (tmp_path / "unused.db").exists()
    one.close()
    two.close()


def _log(url, tmp_path) -> QuestionLog:
    return QuestionLog(tmp_path / "log" / "questions.db", SECRET, db=PgDatabase(url),
                       clock=lambda: datetime(2026, 12, 5, 9, 0, tzinfo=UTC))


def test_question_log_and_feedback_over_postgres(pg_url, tmp_path):
    log = _log(pg_url, tmp_path)
    qid = log.record(channel="web", user="u1", question="số 0912345678 làm căn cước", answer=Answer("q", "answer"),
                     latency_ms=12.5)
    assert isinstance(qid, int)
    assert log.feedback(qid, 1, channel="web", user="someone-else") is False
    assert log.feedback(qid, -1, channel="web", user="u1") is True
    [row] = log.questions()
    assert row["feedback"] == -1 and "0912345678" not in row["question"]
    assert [t["id"] for t in log.last_turns("web", "u1")] == [qid]
    log.db.close()


def test_two_couriers_deliver_a_staff_reply_exactly_once(pg_url, tmp_path):
    logs = [_log(pg_url, tmp_path / str(n)) for n in range(2)]
    handoffs = [Handoff(log) for log in logs]
    for n in range(30):
        handoffs[0].open_ticket("zalo", f"z{n}", "/canbo")
    for n in range(30):
        ticket = handoffs[n % 2].claim_ticket()
        assert ticket is not None
        handoffs[n % 2].mark_notified(ticket.id, f"staff-{ticket.id}")
    assert handoffs[0].claim_ticket() is None and handoffs[1].claim_ticket() is None
    for n in range(1, 31):
        assert handoffs[1].staff_reply(f"staff-{n}", f"trả lời {n}") is not None
    sent: list[tuple[str, str]] = []

    async def send(address, text):
        await asyncio.sleep(0.001)  # let the other courier run meanwhile
        sent.append((address, text))

    async def both():
        return await asyncio.gather(*(Courier(h, "zalo", send).pump() for h in handoffs for _ in range(2)))

    counts = asyncio.run(both())
    assert sum(counts) == 30 and len(sent) == 30 and len(set(sent)) == 30
    assert asyncio.run(both()) == [0, 0, 0, 0]
    for log in logs:
        log.db.close()


def test_a_reply_not_sent_goes_back_to_the_queue(pg_url, tmp_path):
    log = _log(pg_url, tmp_path)
    handoff = Handoff(log)
    handoff.open_ticket("zalo", "z1", "/canbo")
    ticket = handoff.claim_ticket()
    handoff.mark_notified(ticket.id, "s1")
    handoff.staff_reply("s1", "xin chào")

    async def refuse(address, text):
        raise ConnectionRefusedError("not taken")

    with pytest.raises(ConnectionRefusedError):
        asyncio.run(Courier(handoff, "zalo", refuse).pump())
    sent = []

    async def send(address, text):
        sent.append(text)

    assert asyncio.run(Courier(handoff, "zalo", send).pump()) == 1 and len(sent) == 1
    log.db.close()


def test_web_replies_polled_by_two_workers_are_handed_over_once(pg_url, tmp_path):
    logs = [_log(pg_url, tmp_path / str(n)) for n in range(2)]
    h0, h1 = Handoff(logs[0]), Handoff(logs[1])
    h0.open_ticket("web", "w1", "/canbo")
    ticket = h0.claim_ticket()
    h0.mark_notified(ticket.id, "s1")
    for n in range(10):
        h1.staff_reply("s1", f"tin {n}")
    got: list[str] = []

    def poll(h):
        for _ in range(5):
            got.extend(d.text for d in h.take_replies("web", "w1"))

    threads = [threading.Thread(target=poll, args=(h,)) for h in (h0, h1, h0, h1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(f"Cán bộ trả lời yêu cầu số {ticket.id} của bạn:\n\ntin {n}" for n in range(10))
    for log in logs:
        log.db.close()


def test_a_full_pool_gives_the_citizen_the_busy_reply(pg_url, shipped):
    from bot.service.desk import Desk

    db = PgDatabase(pg_url, pool_size=1, pool_timeout=0.5)
    desk = Desk(shipped, state=SharedState(db, SECRET), workers=2)
    held, release = threading.Event(), threading.Event()

    def hold():
        with db.atomic():
            db.execute("SELECT 1")
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        reply = asyncio.run(desk.aask("web", "citizen", "lệ phí hộ chiếu"))
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert reply.busy and reply.answer.kind == "busy" and 0.4 <= waited < 5
    after = asyncio.run(desk.aask("web", "citizen", "lệ phí hộ chiếu"))
    assert not after.busy and after.answer.kind == "answer"
    desk._pool.shutdown()
    desk._side.shutdown()
    desk._store.shutdown()
    db.close()


def _serve(args: list[str], env: dict[str, str], tmp_path) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    from bot.config import ROOT

    (tmp_path / "config.toml").write_text('[data]\ndir = "data"\n')
    run = subprocess.run([sys.executable, "-m", "bot", "serve", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CCHC_CONFIG": str(tmp_path / "config.toml"), **env})
    return run.returncode, run.stdout + run.stderr


def test_serve_with_the_database_down_or_a_wrong_url_says_which_without_the_password(tmp_path, postgres):
    port = free_port()
    for url, expected in ((f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/cchc", f"127.0.0.1:{port}"),
                          (f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{postgres.port}/no_such_db", "no_such_db"),
                          (f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{postgres.port}:99/x", "Lỗi")):
        for workers in (["--workers", "2"], []):
            code, output = _serve(workers, {"CCHC_STORE_URL": url, "CCHC_STORE_CONNECT_TIMEOUT": "2"}, tmp_path)
            assert code == 1 and "Lỗi:" in output and expected in output, output
            assert PASSWORD not in output and "Traceback" not in output, output


def test_serve_with_several_workers_needs_the_shared_store(tmp_path):
    code, output = _serve(["--workers", "2"], {"CCHC_STORE_URL": ""}, tmp_path)
    assert code == 1 and "CCHC_STORE_URL" in output and "Traceback" not in output, output


def test_two_workers_refresh_the_zalo_token_once_under_the_advisory_lock(pg_url, tmp_path):
    import aiohttp
    from fake_zalo import FakeZalo

    from bot.channels.zalo import Secrets, TokenStore, ZaloClient

    PgDatabase(pg_url).close()  # the schema

    async def scenario():
        async with FakeZalo() as zalo:
            env = zalo.env()
            secrets = Secrets.from_env(env)
            assert secrets is not None
            async with aiohttp.ClientSession() as one, aiohttp.ClientSession() as two:
                stores = [TokenStore(tmp_path / f"w{n}.json", env["ZALO_ACCESS_TOKEN"], env["ZALO_REFRESH_TOKEN"],
                                     url=pg_url) for n in range(2)]
                for store in stores:
                    await store.load()
                clients = [ZaloClient(session, secrets, store, zalo.url, zalo.url)
                           for session, store in zip((one, two), stores)]
                zalo.expire_token()
                # both workers found the access token expired at once: one refresh, the other adopts its pair
                await asyncio.gather(*(c.refresh(env["ZALO_ACCESS_TOKEN"]) for c in clients))
                third = TokenStore(tmp_path / "w3.json", env["ZALO_ACCESS_TOKEN"], env["ZALO_REFRESH_TOKEN"],
                                   url=pg_url)
                await third.load()  # a worker started later
                return zalo.refreshes, list(zalo.refused), [(s.access_token, s.refresh_token) for s in
                                                            (*stores, third)], (zalo.access_token, zalo.refresh_token)

    refreshes, refused, pairs, current = asyncio.run(scenario())
    assert refreshes == 1 and refused == []
    assert pairs == [current] * 3
    assert not list(tmp_path.glob("w*.json"))  # the pair lives in the store, not in files
