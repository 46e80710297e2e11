"""A local fake of Zalo: it signs webhook events exactly as Zalo does and serves the OA message and token APIs.

    async with FakeZalo() as zalo:                      # serves on 127.0.0.1, a free port
        env = zalo.env()                                # ZALO_* variables for the bot
        status = await zalo.deliver(url, zalo.text_event("user-1", "lệ phí khai sinh"))
        sent = await zalo.wait_sent(1)                  # what the bot sent, as Zalo received it
        sent[0].quota_type                              # "reply" (the citizen's message named) or "proactive"
        zalo.expire_token()                             # the next send gets error -216
        zalo.fail_next(-32, "Quota exceeded")            # fault injection: the next sends fail with this error
        zalo.break_next("503", times=2)                 # transport faults: "429", "5xx" codes, "hang", "drop", "garbage"
        zalo.break_next("deliver_hang")                 # the message is delivered, then the answer never comes
        await zalo.refuse(); ...; await zalo.reopen()   # nothing listens: connections are refused

Like Zalo, both APIs answer HTTP 200 with an `error` code in the body. Anything the real API would refuse (a
missing or unknown token, a text over 2,000 characters, an unknown button type, more than 5 buttons, a malformed
body, a reply to a message the citizen never sent, a citizen silent for more than 7 days) is refused with Zalo's
error shape, and recorded in `refused`, so a test can assert there was none.

Quotas, as Zalo counts them (Zalo OA help centre, "Các loại tin của Zalo Official Account",
https://zalooa.freshdesk.com/support/solutions/articles/64000261136): a message naming the citizen's message
(`recipient.message_id`) is a reply, free up to 8 within 48 hours of that message; anything else, a message sent
with only `recipient.user_id`, the 9th reply or one sent later, is a proactive message ("tin chủ động"), billed. A
consultation message reaches only a citizen who interacted with the OA (sent a message, followed) in the last 7 days.
Each accepted message records its `quota_type`; the API answers with `data.quota.quota_type` ("reply", or
"sub_quota" for a proactive message paid from the OA's package).

Transport faults (`break_next`) happen in front of the API, as at a gateway, before anything is delivered: an HTTP
429 (with `Retry-After` when given) or 5xx with an HTML body, a hang past the client's timeout, a connection closed
without an answer, or a 200 whose body is cut-off JSON — except "deliver_hang", where the message is delivered and
the connection then hangs, as when the answer is lost on the way back. Every call to the message API is counted in
`calls`; `refuse()` closes the listening socket (and the open connections) until `reopen()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

BUTTON_TYPES = {"oa.open.url", "oa.query.show", "oa.query.hide", "oa.open.sms", "oa.open.phone"}


def zalo_signature(app_id: str, body: bytes, timestamp: str, oa_secret_key: str) -> str:
    """Zalo's X-ZEvent-Signature, written from its documentation (independently of bot.zalo)."""
    return "mac=" + hashlib.sha256(f"{app_id}{body.decode()}{timestamp}{oa_secret_key}".encode()).hexdigest()


@dataclass
class Sent:
    """One message the OA API accepted."""

    user_id: str
    message: dict
    token: str
    quota_type: str = "proactive"  # "reply": counted against the free replies to the citizen's message
    reply_to: str | None = None  # the citizen's message it answers (recipient.message_id)

    @property
    def text(self) -> str:
        return self.message.get("text", "")

    @property
    def buttons(self) -> list[dict]:
        return ((self.message.get("attachment") or {}).get("payload") or {}).get("buttons", [])


@dataclass
class FakeZalo:
    """The Zalo platform as a bot sees it: webhook sender, OA message API, OAuth token API."""

    app_id: str = "4242424242424242424"
    oa_id: str = "1717171717171717171"
    oa_secret_key: str = "fake-oa-secret-key"
    app_secret: str = "fake-app-secret"
    access_token: str = "access-0"
    refresh_token: str = "refresh-0"
    sent: list[Sent] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)  # calls answered with an error, and why
    refreshes: int = 0
    url: str = ""
    calls: int = 0  # requests to the message API, faulty ones included
    hang_seconds: float = 30.0  # how long a "hang" fault keeps the request open (cut short when the fake closes)
    port: int = 0  # 0: a free port, chosen when the fake starts
    _faults: list[tuple[int, str]] = field(default_factory=list)
    _incoming: dict[str, list] = field(default_factory=dict)  # msg_id → [user, sent at (s), replies used]
    _interacted: dict[str, float] = field(default_factory=dict)  # user → last interaction with the OA (s)
    _breaks: list[tuple[str, int | None]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- lifecycle ---

    async def __aenter__(self) -> FakeZalo:
        app = web.Application()
        app.router.add_post("/v3.0/oa/message/cs", self._message_cs)
        app.router.add_post("/v4/oa/access_token", self._access_token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._session = aiohttp.ClientSession()
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        return self

    async def __aexit__(self, *exc) -> None:
        self._closing.set()
        await self._session.close()
        await self._runner.cleanup()

    async def refuse(self) -> None:
        """Stop listening and close the open connections: from now on every connection to the API is refused."""
        await self._site.stop()
        assert self._runner.server is not None
        for connection in self._runner.server.connections:
            connection.force_close()
        await asyncio.sleep(0.05)  # the client sees its pooled connections close

    async def reopen(self) -> None:
        """Listen again on the same port."""
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()

    def env(self) -> dict[str, str]:
        """The environment a bot needs to talk to this fake (secrets and base URLs)."""
        return {"ZALO_APP_ID": self.app_id, "ZALO_OA_SECRET_KEY": self.oa_secret_key,
                "ZALO_APP_SECRET": self.app_secret, "ZALO_ACCESS_TOKEN": self.access_token,
                "ZALO_REFRESH_TOKEN": self.refresh_token,
                "CCHC_ZALO_API_URL": self.url, "CCHC_ZALO_OAUTH_URL": self.url}

    # --- fault injection ---

    def expire_token(self) -> None:
        """The current access token expires: sends with it get -216 until the bot refreshes."""
        self.access_token = f"access-expired-{next(self._ids)}"

    def fail_next(self, error: int, message: str, times: int = 1) -> None:
        """The next `times` message sends fail with this Zalo error code."""
        self._faults.extend([(error, message)] * times)

    def break_next(self, kind: str, times: int = 1, retry_after: int | None = None) -> None:
        """The next `times` message sends meet a transport fault: "429", "500"…"504", "hang", "drop", "garbage", or
        "deliver_hang" (delivered, then no answer)."""
        if kind not in {"429", "500", "502", "503", "504", "hang", "drop", "garbage", "deliver_hang"}:
            raise ValueError(f"unknown fault {kind!r}")
        self._breaks.extend([(kind, retry_after)] * times)

    async def _broken(self, request: web.Request) -> web.StreamResponse | None:
        """Play the next transport fault, if any; None lets the API answer."""
        if not self._breaks or self._breaks[0][0] == "deliver_hang":
            return None
        kind, retry_after = self._breaks.pop(0)
        self.refused.append({"call": "message/cs", "error": kind, "message": "transport fault"})
        if kind == "hang":
            await self._hang()
            return web.Response(status=504, text="<html><body>504 Gateway Time-out</body></html>",
                                content_type="text/html")
        if kind == "drop":
            assert request.transport is not None
            request.transport.abort()  # the connection is reset; no status line is ever written
            raise asyncio.CancelledError
        if kind == "garbage":
            return web.Response(status=200, text='{"data": {"message_id": "oamsg', content_type="application/json")
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        titles = {"429": "Too Many Requests", "500": "Internal Server Error", "502": "Bad Gateway",
                  "503": "Service Temporarily Unavailable", "504": "Gateway Time-out"}
        return web.Response(status=int(kind), headers=headers, content_type="text/html",
                            text=f"<html><head><title>{kind} {titles[kind]}</title></head><body></body></html>")

    async def _hang(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.hang_seconds)

    # --- webhooks, signed like Zalo ---

    def _stamp(self) -> str:
        return str(int(time.time() * 1000))

    def text_event(self, user: str, text: str, msg_id: str | None = None, timestamp: str | None = None) -> dict:
        """A `user_send_text` event (a typed message, or the payload of an oa.query button)."""
        stamp = timestamp or self._stamp()
        return {"app_id": self.app_id, "sender": {"id": user}, "user_id_by_app": f"app-{user}",
                "recipient": {"id": self.oa_id}, "event_name": "user_send_text",
                "message": {"text": text, "msg_id": msg_id or f"msg{next(self._ids):012d}"}, "timestamp": stamp}

    def follow_event(self, user: str) -> dict:
        """A `follow` event: a citizen followed the OA."""
        return {"oa_id": self.oa_id, "follower": {"id": user}, "user_id_by_app": f"app-{user}",
                "event_name": "follow", "source": "oa_profile", "app_id": self.app_id, "timestamp": self._stamp()}

    def attachment_event(self, user: str, kind: str = "image") -> dict:
        """`user_send_image`, `user_send_sticker`, `user_send_file`… with one attachment."""
        payload = {"image": {"thumbnail": "https://example.invalid/t.jpg", "url": "https://example.invalid/i.jpg"},
                   "sticker": {"id": "abc", "url": "https://example.invalid/s.png"},
                   "file": {"url": "https://example.invalid/f.pdf", "size": "1024", "name": "don.pdf",
                            "checksum": "x", "type": "pdf"}}.get(kind, {"url": "https://example.invalid/x"})
        return {"app_id": self.app_id, "sender": {"id": user}, "user_id_by_app": f"app-{user}",
                "recipient": {"id": self.oa_id}, "event_name": f"user_send_{kind}",
                "message": {"msg_id": f"msg{next(self._ids):012d}", "text": "",
                            "attachments": [{"type": kind, "payload": payload}]},
                "timestamp": self._stamp()}

    async def deliver(self, webhook_url: str, event: dict, signature: str | None = None,
                      body: bytes | None = None, session: aiohttp.ClientSession | None = None) -> tuple[int, str]:
        """POST an event to the bot as Zalo does; `signature`/`body` override them (forgeries); `session` picks the
        connection (a worker of several). (status, text)"""
        raw = body if body is not None else json.dumps(event, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        sig = signature if signature is not None else zalo_signature(self.app_id, raw, str(event.get("timestamp", "")),
                                                                     self.oa_secret_key)
        if sig:
            headers["X-ZEvent-Signature"] = sig
        self._interaction(event)
        async with (session or self._session).post(webhook_url, data=raw, headers=headers) as response:
            return response.status, await response.text()

    def _interaction(self, event: dict) -> None:
        """What Zalo knows once a citizen acted: their message (a reply may name it) and when they last interacted."""
        try:
            at = int(event.get("timestamp", "")) / 1000
        except (TypeError, ValueError):
            return
        name = str(event.get("event_name", ""))
        if name == "follow":
            self._interacted[str((event.get("follower") or {}).get("id", ""))] = at
        elif name.startswith("user_send_"):
            user = str((event.get("sender") or {}).get("id", ""))
            self._interacted[user] = max(at, self._interacted.get(user, 0.0))
            msg_id = (event.get("message") or {}).get("msg_id")
            if msg_id:
                self._incoming.setdefault(str(msg_id), [user, at, 0])

    def quota(self, quota_type: str, user: str | None = None) -> list[Sent]:
        """Accepted messages counted against one quota ("reply" or "proactive"), to one citizen if given."""
        return [s for s in self.sent if s.quota_type == quota_type and (user is None or s.user_id == user)]

    async def wait_sent(self, count: int, timeout: float = 60.0) -> list[Sent]:
        """Wait until at least `count` messages were accepted; returns them all."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.sent) >= count), timeout)
        return list(self.sent)

    # --- the APIs ---

    async def _refuse(self, call: str, error: int, message: str) -> web.Response:
        self.refused.append({"call": call, "error": error, "message": message})
        async with self._changed:
            self._changed.notify_all()
        return web.json_response({"error": error, "message": message})

    async def _message_cs(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        broken = await self._broken(request)
        if broken is not None:
            return broken
        token = request.headers.get("access_token", "")
        if not token or token != self.access_token:
            return await self._refuse("message/cs", -216, "Access token is invalid")
        try:
            body = json.loads(await request.read())
            recipient = body["recipient"]
            message = body["message"]
            if not isinstance(recipient, dict) or not (recipient.get("message_id") or recipient.get("user_id")):
                raise KeyError("recipient")
        except (ValueError, KeyError, TypeError):
            return await self._refuse("message/cs", -201, "Parameters are invalid")
        problem = _check_message(message)
        if problem:
            return await self._refuse("message/cs", -201, problem)
        now = time.time()
        reply_to = str(recipient["message_id"]) if recipient.get("message_id") else None
        if reply_to is not None:
            incoming = self._incoming.get(reply_to)
            if incoming is None:
                return await self._refuse("message/cs", -201, f"message_id {reply_to} is not a message to this OA")
            user_id, asked_at, used = incoming
            reply = now - asked_at <= 48 * 3600 and used < 8
        else:
            user_id, reply = str(recipient["user_id"]), False
        if now - self._interacted.get(user_id, float("-inf")) > 7 * 86400:
            return await self._refuse("message/cs", -230, "User has not interacted with the OA in the last 7 days")
        if self._faults:
            error, text = self._faults.pop(0)
            return await self._refuse("message/cs", error, text)
        if reply:
            self._incoming[reply_to][2] += 1  # type: ignore[index]
        quota_type = "reply" if reply else "proactive"
        self.sent.append(Sent(str(user_id), message, token, quota_type, reply_to))
        async with self._changed:
            self._changed.notify_all()
        if self._breaks and self._breaks[0][0] == "deliver_hang":  # delivered; the answer is lost on the way back
            self._breaks.pop(0)
            self.refused.append({"call": "message/cs", "error": "deliver_hang", "message": "delivered, then hung"})
            await self._hang()
            return web.Response(status=504, text="<html><body>504 Gateway Time-out</body></html>",
                                content_type="text/html")
        quota = ({"quota_type": "reply", "remain": str(8 - self._incoming[reply_to][2]), "total": "8"}  # type: ignore[index]
                 if reply else {"quota_type": "sub_quota", "remain": "999", "total": "1000"})
        return web.json_response({"data": {"message_id": f"oamsg{next(self._ids)}", "user_id": user_id,
                                           "quota": quota}, "error": 0, "message": "Success"})

    async def _access_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.headers.get("secret_key") != self.app_secret:
            return await self._refuse("access_token", -14002, "Invalid secret key")
        if form.get("app_id") != self.app_id or form.get("grant_type") != "refresh_token":
            return await self._refuse("access_token", -14001, "Invalid parameter")
        if form.get("refresh_token") != self.refresh_token:  # refresh tokens are single-use
            self.refused.append({"call": "access_token", "error": -14014, "message": "Invalid refresh token"})
            return web.json_response({"error_name": "Invalid refresh token", "error_reason": "Refresh token expired",
                                      "ref_doc": "https://developers.zalo.me/docs", "error_description": "",
                                      "error": -14014})
        self.refreshes += 1
        self.access_token = f"access-{self.refreshes}"
        self.refresh_token = f"refresh-{self.refreshes}"
        return web.json_response({"access_token": self.access_token, "refresh_token": self.refresh_token,
                                  "expires_in": "90000"})


def _check_message(message: dict) -> str:
    if not isinstance(message, dict):
        return "message must be an object"
    text = message.get("text")
    attachment = message.get("attachment")
    if text is None and attachment is None:
        return "message has neither text nor attachment"
    if text is not None and (not isinstance(text, str) or not text.strip() or len(text) > 2000):
        return "text must be 1..2000 characters"
    if attachment is not None:
        if not isinstance(attachment, dict) or attachment.get("type") != "template":
            return "unsupported attachment"
        buttons = (attachment.get("payload") or {}).get("buttons")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 5:
            return "a template needs 1..5 buttons"
        for b in buttons:
            if b.get("type") not in BUTTON_TYPES or not b.get("title") or len(b["title"]) > 100:
                return f"invalid button {b!r}"
            if b["type"] == "oa.open.url" and not str((b.get("payload") or {}).get("url", "")).startswith("http"):
                return f"oa.open.url needs payload.url: {b!r}"
            if b["type"].startswith("oa.query") and (not isinstance(b.get("payload"), str)
                                                     or len(b["payload"]) > 1000):
                return f"oa.query needs a text payload: {b!r}"
    return ""
