"""`python -m bot serve`: one aiohttp server for the Zalo OA webhook, the JSON API and the embeddable web chat."""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiohttp import web

from bot.config import Config
from bot.engine.answer import Answer
from bot.engine.phrases import BUSY, error_id
from bot.service.desk import Desk, RateLimit, Reply

from . import ChannelInfo, registry
from .render import cite, to_json

log = logging.getLogger("bot.web")

STATIC = Path(__file__).parent / "static"
USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DESK = web.AppKey("desk", Desk)
CONFIG = web.AppKey("config", Config)
IP_RATE = web.AppKey("ip_rate", RateLimit)
BAD_JSON = "Nội dung gửi lên không phải JSON hợp lệ. Hãy gửi {\"question\": \"câu hỏi của bạn\"}."
NO_QUESTION = "Thiếu câu hỏi: hãy gửi {\"question\": \"câu hỏi của bạn\"} (question là chuỗi chữ)."
TOO_LARGE = "Yêu cầu quá lớn (tối đa {limit} byte). Bạn hãy hỏi ngắn gọn hơn."
BAD_FEEDBACK = "Góp ý cần {\"question_id\": số, \"value\": 1 hoặc -1, \"token\": mã nhận cùng câu trả lời}."
NOT_JSON = "Hãy gửi nội dung JSON, với tiêu đề Content-Type: application/json."
BAD_REPLIES = "Cần {\"user\": mã cuộc trò chuyện, \"token\": mã nhận cùng phiếu gặp cán bộ}."
SERVER_ERROR = "Xin lỗi, máy chủ gặp sự cố (mã lỗi {error_id}). Bạn vui lòng thử lại sau ít phút."


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=lambda x: json.dumps(x, ensure_ascii=False))


async def _read_json(request: web.Request, limit: int) -> dict | web.Response:
    """The request's JSON object, or the error response to send instead.

    Only `Content-Type: application/json` is read: a browser sends that type cross-site only after a CORS preflight
    this server never grants, so a form posted from another site (text/plain, form-encoded) cannot ask or rate."""
    if request.content_type != "application/json":
        return _error(415, NOT_JSON)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, TOO_LARGE.format(limit=limit))
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # "[[[[…" nested deeper than Python parses
        return _error(400, BAD_JSON)
    if not isinstance(data, dict):
        return _error(400, BAD_JSON)
    return data


def reply_json(reply: Reply, log=None, user: str | None = None) -> dict:
    """The JSON the web chat renders: `ask --json`'s answer plus what a chat needs around it.

    With the question log: `token`, the answer's unguessable token that rating it requires, and, when a ticket for
    staff was opened, `replies` ({"user", "token"}) with which the page fetches the staff replies."""
    data = to_json(reply.answer)
    for source, item in zip(reply.answer.sources, data["sources"]):
        item["cite"] = cite(source)  # 'Title (kiểm tra ngày 21/11/2026)'
    out = {
        **data,
        "question_id": reply.question_id,
        "notes": reply.notes,
        "follow_ups": [{"label": label, "question": question} for label, question in reply.follow_ups],
        "limited": reply.limited,
        "busy": reply.busy,
    }
    if log is not None and reply.question_id is not None:
        out["token"] = log.answer_token(reply.question_id)
    if log is not None and user is not None and reply.answer.kind == "handoff":
        out["replies"] = {"user": user, "token": log.address_token("web", user)}
    return out


def client_address(request: web.Request, trusted: Sequence[str]) -> str:
    """The citizen's address: the peer's, or, when the peer is a trusted proxy, the last address in
    X-Forwarded-For that is not one of the trusted proxies (the ones before it could be forged by the client)."""
    peer = request.remote or "unknown"
    networks = _networks(tuple(trusted))
    if not networks or not _within(peer, networks):
        return peer
    forwarded = [a.strip() for h in request.headers.getall("X-Forwarded-For", []) for a in h.split(",") if a.strip()]
    for address in reversed(forwarded):
        if not _within(address, networks):
            return address
    return forwarded[0] if forwarded else peer


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _within(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def _json(data: dict, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda x: json.dumps(x, ensure_ascii=False))


async def ask(request: web.Request) -> web.Response:
    """POST /api/ask {"question": "...", "user": "<random id kept by the page>"} → the answer as JSON.

    Over the per-address limit: 429; too busy to answer in time: 503. Both with Retry-After and the reply's text
    under "error", and neither takes a place in the answer queue.
    """
    cfg = request.app[CONFIG]
    address = client_address(request, cfg.web.trusted_proxies)
    wait = request.app[IP_RATE].wait(address)
    if wait > 0:
        seconds = max(1, round(wait))
        reply = Reply(Answer("", "limited", parts=[("", BUSY.format(seconds=seconds))]), limited=True,
                      retry_after=seconds)
        return _refused(reply, 429)
    data = await _read_json(request, cfg.web.max_body)
    if isinstance(data, web.Response):
        return data
    question = data.get("question")
    if not isinstance(question, str):
        return _error(400, NO_QUESTION)
    user = data.get("user")
    if not isinstance(user, str) or not USER_ID.match(user):
        user = f"ip-{address}"
    desk = request.app[DESK]
    reply = await desk.aask("web", user, question)
    if reply.busy or reply.limited:
        return _refused(reply, 503 if reply.busy else 429)
    return _json(reply_json(reply, _tokens(desk), user))


def _tokens(desk: Desk):
    """The question log when it can make tokens (answers and addresses), else None."""
    log = desk.log
    return log if log is not None and hasattr(log, "answer_token") and hasattr(log, "address_token") else None


def _refused(reply: Reply, status: int) -> web.Response:
    """429 (too fast) or 503 (too busy): the reply as JSON, its text also under "error", and Retry-After."""
    data = reply_json(reply)
    return _json({**data, "error": data["answer"]}, status, {"Retry-After": str(max(1, reply.retry_after))})


async def feedback(request: web.Request) -> web.Response:
    """POST /api/feedback {"question_id": 12, "value": 1 | -1, "token": "<the answer's token>"} → {"ok": bool}.

    Only the holder of the answer's token (the page it was sent to) can rate it; the write happens off the event
    loop, so a busy log delays this request only."""
    data = await _read_json(request, request.app[CONFIG].web.max_body)
    if isinstance(data, web.Response):
        return data
    question_id, value, token = data.get("question_id"), data.get("value"), data.get("token")
    if (not isinstance(question_id, int) or isinstance(question_id, bool) or value not in (1, -1)
            or isinstance(value, bool) or not isinstance(token, str)):
        return _error(400, BAD_FEEDBACK)
    ok = await request.app[DESK].afeedback(question_id, value, channel="web", token=token)
    return web.json_response({"ok": ok})


async def replies(request: web.Request) -> web.Response:
    """POST /api/replies {"user": "<id>", "token": "<token given with the ticket>"} → {"replies": ["…"]}: the staff
    replies waiting for this citizen, each handed over once. The page polls it while a ticket is open."""
    data = await _read_json(request, request.app[CONFIG].web.max_body)
    if isinstance(data, web.Response):
        return data
    desk = request.app[DESK]
    user, token, log = data.get("user"), data.get("token"), _tokens(desk)
    if not isinstance(user, str) or not isinstance(token, str) or len(user) > 200:
        return _error(400, BAD_REPLIES)
    if log is None or desk.handoff is None or not hmac.compare_digest(
            log.address_token("web", user).encode(), token.encode("utf-8", "surrogatepass")):
        return _error(403, BAD_REPLIES)
    taken = await desk.acall_log(desk.handoff.take_replies, "web", user)
    return _json({"replies": [d.text for d in taken]})


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz → the serving index version, how many entries it holds, and which worker process answered."""
    data = request.app[DESK].assistant.data
    if data is None:
        return web.json_response({"status": "no index", "worker": os.getpid()}, status=503)
    return web.json_response({"status": "ok", "index_version": data.version, "entries": len(data.entries),
                              "worker": os.getpid()})


async def index(request: web.Request) -> web.FileResponse:
    """GET / → the chat page."""
    return web.FileResponse(STATIC / "index.html")


@web.middleware
async def errors(request: web.Request, handler):
    """Every error as a short JSON message in Vietnamese; an unexpected one is logged with an id, never shown."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status == 413:
            return _error(413, TOO_LARGE.format(limit=request.app[CONFIG].web.max_body))
        if e.status == 404:
            return _error(404, "Không có trang này.")
        if e.status == 405:
            return _error(405, "Phương thức không được hỗ trợ ở địa chỉ này.")
        if e.status >= 400:
            return _error(e.status, e.reason)
        raise  # redirects
    except Exception:
        error = error_id()
        log.exception("error %s serving %s %s", error, request.method, request.path)
        return _error(500, SERVER_ERROR.format(error_id=error))


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on every response, errors and static files included; `[web] frame_ancestors` names the
    portals allowed to embed the chat ('self' by default: a portal that embeds it names itself in config)."""
    ancestors = request.app[CONFIG].web.frame_ancestors
    response.headers.setdefault("Content-Security-Policy",
                                f"default-src 'self'; img-src 'self' data:; frame-ancestors {ancestors}")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")


def mount(app: web.Application, cfg: Config, desk: Desk, env: Mapping[str, str] | None = None) -> None:
    """The web chat's own routes: the page, its static files and the JSON API."""
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_post("/api/ask", ask)
    app.router.add_post("/api/feedback", feedback)
    app.router.add_post("/api/replies", replies)


CHANNEL = ChannelInfo("web", "Web", "#7A8B99", share=0.15, section="web", mount=mount)


def make_app(cfg: Config, desk: Desk, env: Mapping[str, str] | None = None, warm: bool = False) -> web.Application:
    """The server: a health check, then every registered channel's routes (web chat and JSON API, Zalo webhook).
    With `warm`, the desk measures its pace before the server listens (`Desk.warm_up`)."""
    app = web.Application(client_max_size=cfg.web.max_body, middlewares=[errors])
    app.on_response_prepare.append(security_headers)
    app[DESK], app[CONFIG] = desk, cfg
    app[IP_RATE] = RateLimit(cfg.web.ip_rate_count, cfg.web.ip_rate_seconds)
    app.router.add_get("/healthz", healthz)
    for channel in registry().values():
        if channel.mount is not None:
            channel.mount(app, cfg, desk, env)
    if warm:
        async def warm_up(app: web.Application) -> None:
            await desk.warm_up()

        app.on_startup.append(warm_up)
    return app


def serve(cfg: Config, workers: int = 1) -> None:
    """Open the desk and serve until interrupted; with `workers` > 1, that many processes share the port
    (SO_REUSEPORT: the kernel spreads connections over them) and the PostgreSQL store (`[store] url`)."""
    if workers > 1:
        serve_workers(cfg, workers)
        return
    from bot.service.desk import open_desk

    desk = open_desk(cfg)
    try:
        web.run_app(make_app(cfg, desk, warm=True), host=cfg.web.listen, port=cfg.web.port, print=None,
                    reuse_port=bool(cfg.store.url) or None)
    finally:
        desk.close()


class WorkersError(ValueError):
    """`serve --workers N` asked for something it cannot do."""


def _worker(cfg: Config) -> None:
    """One worker process of `serve --workers N`."""
    import signal

    from bot.service.desk import open_desk

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers (SIGTERM) on Ctrl+C
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s %(name)s[{os.getpid()}]: %(message)s")
    desk = open_desk(cfg)
    try:
        web.run_app(make_app(cfg, desk, warm=True), host=cfg.web.listen, port=cfg.web.port, print=None,
                    reuse_port=True)
    finally:
        desk.close()


def serve_workers(cfg: Config, workers: int, restart: bool = True) -> None:
    """N worker processes on one port; a worker that dies is started again (a killed one loses only the questions
    it had not answered yet: the others, and its replacement, carry on from the shared store)."""
    import multiprocessing
    import signal
    import time

    if not cfg.store.url:
        raise WorkersError("--workers > 1 cần kho dữ liệu dùng chung: đặt [store] url hoặc CCHC_STORE_URL "
                           "(PostgreSQL); với SQLite chỉ chạy được một tiến trình")
    from bot.service.store import open_pg

    first = open_pg(cfg)  # a database that is down or a wrong URL: one clear error, before any worker starts
    if first is not None:
        first.close()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(cfg,), name=f"worker-{n}") for n in range(workers)]
    for process in processes:
        process.start()
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = {p.name: time.monotonic() for p in processes}
    try:
        while not stopping:
            time.sleep(0.5)
            for n, process in enumerate(processes):
                if process.is_alive() or stopping:
                    continue
                # a worker that fails by itself within seconds of its start would fail again: give up
                failing = time.monotonic() - started[process.name] < 10 and process.exitcode not in (-9, -15)
                log.error("worker %s (pid %s) stopped with code %s%s", process.name, process.pid, process.exitcode,
                          "; starting it again" if restart and not failing else "; stopping")
                if not restart or failing:
                    stopping = True
                    break
                processes[n] = context.Process(target=_worker, args=(cfg,), name=process.name)
                processes[n].start()
                started[process.name] = time.monotonic()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=30)
