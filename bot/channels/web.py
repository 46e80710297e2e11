"""`python -m bot serve`: one aiohttp server for the Zalo OA webhook, the JSON API and the embeddable web chat."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from bot.config import Config
from bot.service.desk import Desk, Reply

from . import ChannelInfo, registry
from .render import cite, to_json

log = logging.getLogger("bot.web")

STATIC = Path(__file__).parent / "static"
USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DESK = web.AppKey("desk", Desk)
CONFIG = web.AppKey("config", Config)
BAD_JSON = "Nội dung gửi lên không phải JSON hợp lệ. Hãy gửi {\"question\": \"câu hỏi của bạn\"}."
NO_QUESTION = "Thiếu câu hỏi: hãy gửi {\"question\": \"câu hỏi của bạn\"} (question là chuỗi chữ)."
TOO_LARGE = "Yêu cầu quá lớn (tối đa {limit} byte). Bạn hãy hỏi ngắn gọn hơn."
BAD_FEEDBACK = "Góp ý cần {\"question_id\": số, \"value\": 1 hoặc -1}."


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=lambda x: json.dumps(x, ensure_ascii=False))


async def _read_json(request: web.Request, limit: int) -> dict | web.Response:
    """The request's JSON object, or the error response to send instead."""
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


def reply_json(reply: Reply) -> dict:
    """The JSON the web chat renders: `ask --json`'s answer plus what a chat needs around it."""
    data = to_json(reply.answer)
    for source, item in zip(reply.answer.sources, data["sources"]):
        item["cite"] = cite(source)  # 'Title (kiểm tra ngày 21/11/2026)'
    return {
        **data,
        "question_id": reply.question_id,
        "notes": reply.notes,
        "follow_ups": [{"label": label, "question": question} for label, question in reply.follow_ups],
        "limited": reply.limited,
    }


async def ask(request: web.Request) -> web.Response:
    """POST /api/ask {"question": "...", "user": "<random id kept by the page>"} → the answer as JSON."""
    data = await _read_json(request, request.app[CONFIG].web.max_body)
    if isinstance(data, web.Response):
        return data
    question = data.get("question")
    if not isinstance(question, str):
        return _error(400, NO_QUESTION)
    user = data.get("user")
    if not isinstance(user, str) or not USER_ID.match(user):
        user = f"ip-{request.remote or 'unknown'}"
    reply = await request.app[DESK].aask("web", user, question)
    return web.json_response(reply_json(reply), dumps=lambda x: json.dumps(x, ensure_ascii=False))


async def feedback(request: web.Request) -> web.Response:
    """POST /api/feedback {"question_id": 12, "value": 1 | -1} → {"ok": true|false}."""
    data = await _read_json(request, request.app[CONFIG].web.max_body)
    if isinstance(data, web.Response):
        return data
    question_id, value = data.get("question_id"), data.get("value")
    if (not isinstance(question_id, int) or isinstance(question_id, bool) or value not in (1, -1)
            or isinstance(value, bool)):
        return _error(400, BAD_FEEDBACK)
    ok = request.app[DESK].feedback(question_id, value)
    return web.json_response({"ok": ok})


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz → the serving index version and how many entries it holds."""
    data = request.app[DESK].assistant.data
    if data is None:
        return web.json_response({"status": "no index"}, status=503)
    return web.json_response({"status": "ok", "index_version": data.version, "entries": len(data.entries)})


async def index(request: web.Request) -> web.FileResponse:
    """GET / → the chat page."""
    return web.FileResponse(STATIC / "index.html")


@web.middleware
async def headers(request: web.Request, handler):
    """Security headers; `[web] frame_ancestors` names the portals allowed to embed the chat."""
    try:
        response = await handler(request)
    except web.HTTPException as e:
        if e.status == 413:
            response = _error(413, TOO_LARGE.format(limit=request.app[CONFIG].web.max_body))
        elif e.status == 404:
            response = _error(404, "Không có trang này.")
        elif e.status == 405:
            response = _error(405, "Phương thức không được hỗ trợ ở địa chỉ này.")
        else:
            raise
    ancestors = request.app[CONFIG].web.frame_ancestors
    response.headers.setdefault("Content-Security-Policy",
                                f"default-src 'self'; img-src 'self' data:; frame-ancestors {ancestors}")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def mount(app: web.Application, cfg: Config, desk: Desk, env: Mapping[str, str] | None = None) -> None:
    """The web chat's own routes: the page, its static files and the JSON API."""
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_post("/api/ask", ask)
    app.router.add_post("/api/feedback", feedback)


CHANNEL = ChannelInfo("web", "Web", "#7A8B99", share=0.15, section="web", mount=mount)


def make_app(cfg: Config, desk: Desk, env: Mapping[str, str] | None = None) -> web.Application:
    """The server: a health check, then every registered channel's routes (web chat and JSON API, Zalo webhook)."""
    app = web.Application(client_max_size=cfg.web.max_body, middlewares=[headers])
    app[DESK], app[CONFIG] = desk, cfg
    app.router.add_get("/healthz", healthz)
    for channel in registry().values():
        if channel.mount is not None:
            channel.mount(app, cfg, desk, env)
    return app


def serve(cfg: Config) -> None:
    """Open the desk and serve until interrupted."""
    from bot.service.desk import open_desk

    desk = open_desk(cfg)
    try:
        web.run_app(make_app(cfg, desk), host=cfg.web.listen, port=cfg.web.port, print=None)
    finally:
        desk.close()
