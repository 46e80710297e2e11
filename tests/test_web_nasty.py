"""Bad input and attacks on the web server (`python -m bot serve`) over real HTTP: the nasty corpus through
POST /api/ask, malformed and oversized bodies, path traversal in the static route, forged Zalo webhooks."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

import bot.channels.web as web_module  # an import failure is an error here, never a skip
from bot.config import load_config
from bot.service.desk import Desk
from tests.test_nasty import CORPUS, MARKUP, OK_KINDS, UNSAFE_CHARS, VIETNAMESE

SECRET_FILES = ("config.toml", "bot/channels/web.py", "etc/passwd", "pyproject.toml")


@pytest.fixture(scope="module")
def server_parts(shipped, tmp_path_factory):
    folder = tmp_path_factory.mktemp("web")
    (folder / "config.toml").write_text('[data]\ndir = "state"\n', encoding="utf-8")
    cfg = load_config(folder / "config.toml", env={})
    desk = Desk(shipped, rate_count=0)
    yield cfg, desk
    desk.close()


def serve(server_parts, scenario):
    """Run `scenario(base_url)` against the real app on a local port."""
    cfg, desk = server_parts

    async def main():
        server = TestServer(web_module.make_app(cfg, desk, env={}))
        await server.start_server()
        try:
            return await scenario(str(server.make_url("")).rstrip("/"))
        finally:
            await server.close()

    return asyncio.run(main())


async def raw_http(base: str, request: bytes) -> tuple[int, bytes]:
    """Send bytes exactly as written (no client-side path normalisation); the status and the body."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_the_nasty_corpus_through_the_json_api(server_parts):
    limit = server_parts[0].web.max_body

    async def scenario(base):
        out = []
        async with ClientSession() as session:
            for i, (_, text) in enumerate(CORPUS):
                body = json.dumps({"question": text, "user": f"u{i}"}).encode()  # \ud800 escaped as JSON allows
                async with session.post(f"{base}/api/ask", data=body,
                                        headers={"Content-Type": "application/json"}) as response:
                    out.append((text, len(body), response.status, await response.read(), dict(response.headers)))
        return out

    for text, size, status, raw, headers in serve(server_parts, scenario):
        payload = json.loads(raw.decode("utf-8"))  # strict UTF-8 and JSON, whatever was asked
        assert "Content-Security-Policy" in headers and headers.get("X-Content-Type-Options") == "nosniff"
        if size > limit:
            assert status == 413 and VIETNAMESE.search(payload["error"])
            continue
        assert status == 200, (text[:80], payload)
        assert payload["kind"] in OK_KINDS and VIETNAMESE.search(payload["answer"])
        assert not UNSAFE_CHARS.search(payload["answer"] + payload["question"])
        for marker in MARKUP:
            if marker in text.lower():
                assert marker not in payload["answer"].lower()


MALFORMED = [
    b"not json", b"[]", b"null", b"\"question\"", b"{\"question\": 12}", b"{\"question\": null}",
    b"{\"question\": [\"a\"]}", b"\xff\xfe{\x00}", b"{\"question\": \"\xc3\x28\"}", b"", b"{" * 5000,
    b"[" * 8000 + b"]" * 8000, b"{\"question\": \"khai sinh\", \"user\": \"../../etc\"}",
    b"{\"question\": \"" + b"\\ud800" * 100 + b"\"}", b"{\"question\": \"x\"" + b", \"k\": 1" * 1500 + b"}",
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bodies_get_a_polite_json_error_never_a_500(server_parts, body):
    async def scenario(base):
        async with ClientSession() as session, session.post(f"{base}/api/ask", data=body,
                                                            headers={"Content-Type": "application/json"}) as r:
            return r.status, await r.read()

    status, raw = serve(server_parts, scenario)
    payload = json.loads(raw.decode("utf-8"))
    assert status in (200, 400, 413), (status, raw[:300])
    if status != 200:
        assert VIETNAMESE.search(payload["error"])
    else:
        assert payload["kind"] in OK_KINDS


def test_an_oversized_body_is_refused_without_reading_it_all(server_parts):
    limit = server_parts[0].web.max_body

    async def scenario(base):
        body = json.dumps({"question": "khai sinh " * (limit // 5)}).encode()
        headers = {"Content-Type": "application/json"}
        async with ClientSession() as session:
            async with session.post(f"{base}/api/ask", data=body, headers=headers) as r:
                first = r.status, await r.read()
            async with session.post(f"{base}/api/feedback", data=b"{" + b" " * (10 * limit) + b"}",
                                    headers=headers) as r:
                second = r.status, await r.read()
        return first, second

    for status, raw in serve(server_parts, scenario):
        assert status == 413 and VIETNAMESE.search(json.loads(raw)["error"])


TRAVERSALS = [
    "/static/../config.toml", "/static/..%2f..%2fconfig.toml", "/static/%2e%2e/%2e%2e/config.toml",
    "/static/....//....//config.toml", "/static/..\\..\\config.toml", "/static/%252e%252e/web.py",
    "/static//etc/passwd", "/static/../../../../../../etc/passwd", "/../../etc/passwd", "/static/%00.css",
    "/static/chat.js%00.html", "/static/../web.py", "/static/.%2e/web.py", "//etc/passwd", "/static/./../web.py",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_in_the_static_route_serves_nothing_outside_it(server_parts, path):
    async def scenario(base):
        return await raw_http(base, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())

    status, body = serve(server_parts, scenario)
    assert status in (400, 403, 404), (status, body[:200])
    for marker in (b"[data]", b"def make_app", b"root:", b"[tool.pytest"):
        assert marker not in body


def test_the_static_files_themselves_are_served(server_parts):
    async def scenario(base):
        return [await raw_http(base, f"GET {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                for p in ("/", "/static/chat.js")]

    assert [status for status, _ in serve(server_parts, scenario)] == [200, 200]
