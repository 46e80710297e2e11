"""The web server over real HTTP: JSON API, health check, the chat page driven by headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading

import aiohttp
import pytest
from aiohttp import web

from bot.channels.web import make_app
from bot.config import ROOT, load_config
from bot.service.desk import LONG_NOTE, Desk
from bot.service.qlog import QuestionLog

# The README's screenshot is refreshed only on request (CCHC_SCREENSHOT=1): a test run leaves the checkout clean.
SCREENSHOT = ROOT / "docs" / "webchat.png"


class LiveServer:
    """The app on a free local port, served by its own event loop in a thread (the browser test is synchronous)."""

    def __init__(self, app: web.Application):
        self.app, self.url = app, ""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        self.runner = web.AppRunner(self.app, access_log=None)

        async def start():
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            return self.runner.addresses[0][1]

        port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def qlog(tmp_path_factory):
    log = QuestionLog(tmp_path_factory.mktemp("qlog") / "questions.db", b"test-key")
    yield log
    log.close()


@pytest.fixture(scope="module")
def desk(shipped, qlog):
    desk = Desk(shipped, log=qlog, rate_count=0)
    yield desk
    desk.close()


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "config.toml").write_text('[data]\ndir = "state"\n', encoding="utf-8")
    return load_config(tmp_path / "config.toml", env={})


@pytest.fixture
def server(cfg, desk):
    with LiveServer(make_app(cfg, desk, env={})) as live:
        yield live


def call(method: str, url: str, **kwargs) -> tuple[int, dict | str, dict]:
    """One HTTP request with aiohttp: (status, JSON or text, headers)."""
    async def go():
        async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
            text = await response.text()
            try:
                body: dict | str = json.loads(text)
            except ValueError:
                body = text
            return response.status, body, dict(response.headers)

    return asyncio.run(go())


def test_ask_returns_the_answer_with_cited_sources_and_follow_ups(server, desk):
    status, body, _ = call("POST", server.url + "/api/ask",
                           json={"question": "lam the can cuoc can gi", "user": "api-1"})
    assert status == 200 and isinstance(body, dict)
    assert body["kind"] == "answer" and "căn cước" in body["answer"].lower()
    assert body["sources"] and all(s["cite"].startswith(s["title"]) for s in body["sources"])
    assert [f["label"] for f in body["follow_ups"]][:1] == ["Lệ phí"]
    assert isinstance(body["question_id"], int) and body["notes"] == [] and body["limited"] is False
    # The follow-up is about the same procedure: the conversation is kept per page (user id).
    status, body, _ = call("POST", server.url + "/api/ask", json={"question": "Lệ phí bao nhiêu?", "user": "api-1"})
    assert status == 200 and "căn cước" in body["answer"].lower() and "lệ phí" in body["answer"].lower()


def test_feedback_is_stored_in_the_question_log(server, qlog):
    _, body, _ = call("POST", server.url + "/api/ask", json={"question": "le phi dang ky ket hon", "user": "fb-1"})
    qid, token = body["question_id"], body["token"]
    assert isinstance(token, str) and len(token) == 32
    vote = {"question_id": qid, "value": -1, "token": token}
    assert call("POST", server.url + "/api/feedback", json=vote)[:2] == (200, {"ok": True})
    assert qlog.question(qid)["feedback"] == -1
    assert call("POST", server.url + "/api/feedback", json={**vote, "question_id": 10**9})[:2] == (200, {"ok": False})
    for bad in ({**vote, "value": 5}, {**vote, "question_id": "x"}, {**vote, "value": True}, {"question_id": qid,
                                                                                               "value": 1}):
        status, body, _ = call("POST", server.url + "/api/feedback", json=bad)
        assert status == 400 and "question_id" in body["error"]
    assert qlog.question(qid)["feedback"] == -1


def test_only_the_holder_of_an_answers_token_can_rate_it(server, qlog):
    _, mine, _ = call("POST", server.url + "/api/ask", json={"question": "lệ phí cấp hộ chiếu", "user": "owner-1"})
    _, other, _ = call("POST", server.url + "/api/ask", json={"question": "lệ phí cấp hộ chiếu", "user": "other-1"})
    qid = mine["question_id"]
    for token in (other["token"], "0" * 32, "", mine["token"].upper(), "\ud800"):  # another answer's, guessed…
        assert call("POST", server.url + "/api/feedback",
                    json={"question_id": qid, "value": -1, "token": token})[:2] == (200, {"ok": False}), token
    assert qlog.question(qid)["feedback"] is None  # a question id alone (sequential, guessable) rates nothing
    assert call("POST", server.url + "/api/feedback",
                json={"question_id": qid, "value": 1, "token": mine["token"]})[:2] == (200, {"ok": True})
    assert qlog.question(qid)["feedback"] == 1


def test_a_cross_site_form_post_can_neither_ask_nor_rate(server, qlog):
    """A page on another site can post a form (or text/plain) without a CORS preflight, never JSON: both endpoints
    refuse anything but `Content-Type: application/json`."""
    _, body, _ = call("POST", server.url + "/api/ask", json={"question": "lệ phí khai sinh", "user": "csrf-1"})
    vote = json.dumps({"question_id": body["question_id"], "value": -1, "token": body["token"]})
    for path, data in (("/api/ask", json.dumps({"question": "xin chào"})), ("/api/feedback", vote)):
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            status, reply, headers = call("POST", server.url + path, data=data.encode(), headers={"Content-Type": kind})
            assert status == 415 and "application/json" in reply["error"], (path, kind)
            assert headers["X-Content-Type-Options"] == "nosniff"
    assert qlog.question(body["question_id"])["feedback"] is None


def test_a_locked_log_delays_only_the_feedback_never_the_server(server, qlog, tmp_path):
    """Feedback is written off the event loop: while another process holds the log's write lock, the health
    check and other requests are answered at once; the feedback is stored when the lock goes."""
    import sqlite3
    import time

    _, body, _ = call("POST", server.url + "/api/ask", json={"question": "thời hạn cấp hộ chiếu", "user": "lock-1"})
    vote = {"question_id": body["question_id"], "value": 1, "token": body["token"]}
    locker = sqlite3.connect(qlog.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process writing (a purge, a report's sample)
    try:
        async def scenario():
            async with aiohttp.ClientSession() as session:
                pending = asyncio.ensure_future(session.post(server.url + "/api/feedback", json=vote))
                deadline = time.monotonic() + 30
                while qlog.lock.acquire(blocking=False):  # free until the server's write waits on SQLite's lock
                    qlog.lock.release()
                    assert time.monotonic() < deadline, "the feedback never reached the log"
                    await asyncio.sleep(0.01)
                started = time.monotonic()
                async with session.get(server.url + "/healthz") as r:
                    assert r.status == 200
                quick = time.monotonic() - started
                assert not pending.done()  # still waiting for the lock
                locker.execute("COMMIT")
                async with await pending as r:
                    return quick, r.status, await r.json()

        quick, status, result = asyncio.run(scenario())
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
    assert quick < 2.0 and (status, result) == (200, {"ok": True})
    assert qlog.question(vote["question_id"])["feedback"] == 1


def test_security_headers_are_on_every_response_errors_included(server):
    for method, path, kwargs in (("GET", "/", {}), ("GET", "/static/chat.js", {}), ("GET", "/nowhere", {}),
                                 ("GET", "/api/ask", {}), ("POST", "/api/ask", {"data": b"x"}),
                                 ("POST", "/api/ask", {"json": {"question": "x" * 20_000}}),
                                 ("GET", "/healthz", {})):
        status, _, headers = call(method, server.url + path, **kwargs)
        csp = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'self'" in csp and "default-src 'self'" in csp, (path, status)
        assert headers.get("X-Content-Type-Options") == "nosniff" and headers.get("Referrer-Policy") == "no-referrer"


def test_bad_requests_get_clear_vietnamese_errors(server, cfg):
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe", b""):
        status, body, _ = call("POST", server.url + "/api/ask", data=raw, headers={"Content-Type": "application/json"})
        assert status == 400 and "JSON hợp lệ" in body["error"], raw
    status, body, _ = call("POST", server.url + "/api/ask", json={"question": 42})
    assert status == 400 and "Thiếu câu hỏi" in body["error"]
    status, body, _ = call("POST", server.url + "/api/ask", json={"question": "x" * (cfg.web.max_body + 10)})
    assert status == 413 and "quá lớn" in body["error"]
    status, body, _ = call("GET", server.url + "/api/ask")
    assert status == 405 and "Phương thức" in body["error"]
    status, body, _ = call("POST", server.url + "/api/ask", data=b'{"question": "x"}')  # no JSON content type
    assert status == 415 and "application/json" in body["error"]
    status, body, _ = call("POST", server.url + "/zalo/webhook", data=b"{}")
    assert status == 503 and "Zalo" in body["error"]


def test_long_and_html_questions(server, desk):
    status, body, _ = call("POST", server.url + "/api/ask", json={"question": "thủ tục khai sinh " * 200, "user": "long"})
    assert status == 200 and body["notes"] == [LONG_NOTE.format(limit=desk.max_chars)]
    status, body, _ = call("POST", server.url + "/api/ask", json={"question": "<img src=x onerror=alert(1)>"})
    assert status == 200 and "<img" not in json.dumps(body)


def test_healthz_and_the_page(server, shipped):
    status, body, _ = call("GET", server.url + "/healthz")
    assert status == 200
    assert body == {"status": "ok", "index_version": shipped.data.version, "entries": len(shipped.data.entries),
                    "worker": os.getpid()}  # the process that answered: several share a port with --workers
    status, page, headers = call("GET", server.url + "/")
    assert status == 200 and '<html lang="vi">' in page and 'aria-live="polite"' in page
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]  # a portal that embeds it names itself
    assert 'src="http' not in page and 'href="http' not in page  # no CDN: everything is served from here
    for asset in ("static/chat.js", "static/chat.css"):
        assert call("GET", f"{server.url}/{asset}")[0] == 200


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
def test_the_chat_in_a_real_browser(server, qlog, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 720, "height": 1180}, locale="vi-VN")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/")
        question = page.get_by_label("Câu hỏi của bạn")
        question.fill("lam the can cuoc can gi")  # no diacritics
        question.press("Enter")
        answer = page.locator("article.msg.bot").nth(1)
        expect(answer).to_contain_text("Cấp thẻ căn cước", timeout=60_000)
        expect(answer.get_by_role("heading", name="Nguồn")).to_be_visible()
        source = answer.locator("ul a").first
        assert (source.get_attribute("href") or "").startswith("https://")
        expect(question).to_be_focused()

        answer.get_by_role("group", name="Hỏi tiếp").get_by_role("button", name="Lệ phí").click()
        follow_up = page.locator("article.msg.bot").nth(2)
        expect(follow_up).to_contain_text("lệ phí", timeout=60_000)
        expect(page.locator("article.msg.user").nth(1)).to_have_text("Lệ phí bao nhiêu?")

        useful = follow_up.get_by_role("button", name="✓ Hữu ích")
        useful.click()
        expect(follow_up.get_by_text("Cảm ơn bạn đã góp ý!")).to_be_visible()
        expect(useful).to_have_attribute("aria-pressed", "true")
        stored = [q for q in qlog.questions() if q["channel"] == "web" and q["feedback"] == 1]
        assert stored and "lệ phí" in stored[-1]["question"].lower()

        # HTML typed by a citizen is shown as text, never run.
        question.fill("<b>khai sinh</b><img src=x onerror=alert(1)>")
        page.get_by_role("button", name="Gửi").click()
        expect(page.locator("article.msg.user").nth(2)).to_have_text("<b>khai sinh</b><img src=x onerror=alert(1)>")
        expect(page.locator("article.msg.bot")).to_have_count(4, timeout=60_000)
        assert page.locator("article.msg img, article.msg b").count() == 0

        page.evaluate("document.getElementById('log').scrollTop = document.querySelector('article.msg.user').offsetTop - 90")
        shot = SCREENSHOT if os.environ.get("CCHC_SCREENSHOT") == "1" else tmp_path / "webchat.png"
        page.screenshot(path=str(shot))
        assert errors == []
        browser.close()
    assert shot.stat().st_size > 10_000


def test_a_web_citizen_gets_the_staff_reply_by_polling_with_the_ticket_token(shipped, qlog, cfg):
    from bot.service.handoff import Handoff

    handoff = Handoff(qlog)
    desk = Desk(shipped, log=qlog, handoff=handoff, rate_count=0)
    try:
        with LiveServer(make_app(cfg, desk, env={})) as live:
            status, body, _ = call("POST", live.url + "/api/ask", json={"question": "tôi muốn gặp cán bộ",
                                                                        "user": "web-handoff-1"})
            assert status == 200 and body["kind"] == "handoff" and body["replies"]["user"] == "web-handoff-1"
            poll = body["replies"]
            for bad in ({**poll, "token": "0" * 32}, {**poll, "user": "web-handoff-2"}):  # guessed, someone else's
                assert call("POST", live.url + "/api/replies", json=bad)[0] == 403
            assert call("POST", live.url + "/api/replies", json=poll)[:2] == (200, {"replies": []})
            [ticket] = [t for t in handoff.pending_tickets() if t.channel == "web"]
            handoff.mark_notified(ticket.id, "staff-web-1")
            handoff.staff_reply("staff-web-1", "Chào bạn, hồ sơ của bạn do UBND xã giải quyết.")
            status, got, _ = call("POST", live.url + "/api/replies", json=poll)
            assert status == 200 and len(got["replies"]) == 1 and "UBND xã giải quyết" in got["replies"][0]
            assert call("POST", live.url + "/api/replies", json=poll)[:2] == (200, {"replies": []})  # handed over once
            assert call("POST", live.url + "/api/replies", data=json.dumps(poll).encode(),
                        headers={"Content-Type": "text/plain"})[0] == 415
    finally:
        desk.close()
