"""Zalo Official Account channel: verify webhook events, answer in the background, send through the OA API.

Zalo posts every event to one webhook URL with `X-ZEvent-Signature: mac=<hex sha256(app_id + raw body + timestamp +
OA secret key)>` (a plain hash, not an HMAC), expects a 200 within about two seconds and retries otherwise. Replies
go to `POST {api_url}/v3.0/oa/message/cs` with an `access_token` header; Zalo reports errors in the body with HTTP
200 (`error` != 0). An expired access token (-216) is refreshed with the refresh token (`POST {oauth_url}/v4/oa/
access_token`), the new pair is stored in the data folder (mode 0600, atomic), and the message is sent again once.
A send that meets a transient fault (HTTP 429 or 5xx, a timeout, a dropped or refused connection) is tried again
a bounded number of times with growing pauses (a 429's `Retry-After` is honoured up to a cap); a reply that is not
JSON is not retried (Zalo may have delivered it). A message that still fails is logged with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.config import Config
from bot.engine.phrases import NON_TEXT, apology, error_id
from bot.service.desk import Desk, Reply
from bot.service.handoff import Courier

from . import ChannelInfo
from .render import short, split_text, zalo_text

log = logging.getLogger("bot.zalo")

MAX_BUTTONS = 5
BUTTON_TITLE = 100
BUTTON_PAYLOAD = 1000
QUERY_PREFIX = "#"  # oa.query.hide payloads come back as user_send_text "#<question>"
EXPIRED = -216
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
WELCOME = ("Xin chào! Tôi là Trợ lý cải cách hành chính. Bạn cứ nhắn câu hỏi về thủ tục hành chính, ví dụ "
           "“Làm thẻ căn cước cần giấy tờ gì?” hoặc “dang ky khai sinh o dau”; tôi trả lời kèm nguồn và "
           "đường dẫn nộp hồ sơ trực tuyến.")
# Events that need no answer (receipts, the OA's own messages, unfollow).
SILENT = ("user_received_message", "user_seen_message", "unfollow", "oa_send_text", "oa_send_image", "oa_send_list",
          "oa_send_gif", "oa_send_file", "oa_send_sticker", "oa_send_template")


class ZaloError(RuntimeError):
    """The OA API refused a call (`error` != 0 in its body)."""

    def __init__(self, code: int, message: str):
        super().__init__(f"Zalo error {code}: {message}")
        self.code = code


def signature(app_id: str, body: bytes, timestamp: str, oa_secret_key: str) -> str:
    """The `X-ZEvent-Signature` Zalo sends with a webhook event."""
    data = app_id.encode() + body + str(timestamp).encode() + oa_secret_key.encode()
    return "mac=" + hashlib.sha256(data).hexdigest()


# --- Zalo messages: a Reply as OA message objects (the text comes from render) ---

def reply_buttons(reply: Reply) -> list[dict]:
    """Online-service links as `oa.open.url`, then suggestions and follow-ups as `oa.query.hide` (at most 5)."""
    answer = reply.answer
    queries = [(s, s) for s in answer.suggestions] + list(reply.follow_ups)
    queries = queries[: MAX_BUTTONS - 1]  # leave room for at least one link
    links = [x for x in answer.links if x.url.startswith(("https://", "http://"))]
    buttons = [{"title": short(x.title, BUTTON_TITLE), "type": "oa.open.url", "payload": {"url": x.url}}
               for x in links[: MAX_BUTTONS - len(queries)]]
    for label, question in queries:
        buttons.append({"title": short(label, BUTTON_TITLE), "type": "oa.query.hide",
                        "payload": short(QUERY_PREFIX + question, BUTTON_PAYLOAD)})
    return buttons


def reply_messages(reply: Reply) -> list[dict]:
    """The `message` objects to send, in order; buttons ride on the last one."""
    messages: list[dict] = [{"text": piece} for piece in split_text(zalo_text(reply))]
    buttons = [] if reply.limited else reply_buttons(reply)
    if buttons and messages:
        messages[-1]["attachment"] = {"type": "template", "payload": {"buttons": buttons}}
    return messages


# --- tokens ---

@dataclass
class Secrets:
    """Zalo keys, from the environment only."""

    app_id: str
    oa_secret_key: str
    app_secret: str
    access_token: str
    refresh_token: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Secrets | None:
        """None when the Zalo channel is not configured (no app id or OA secret key)."""
        env = os.environ if env is None else env
        if not env.get("ZALO_APP_ID") or not env.get("ZALO_OA_SECRET_KEY"):
            return None
        return cls(env["ZALO_APP_ID"], env["ZALO_OA_SECRET_KEY"], env.get("ZALO_APP_SECRET", ""),
                   env.get("ZALO_ACCESS_TOKEN", ""), env.get("ZALO_REFRESH_TOKEN", ""))


class TokenStore:
    """The current access and refresh tokens; refreshed ones are kept in a 0600 file that survives a restart.

    The file remembers which initial refresh token it grew from: when an admin puts a new pair in the
    environment (after authorising the app again), the environment wins over the stored pair.
    """

    def __init__(self, path: Path, access_token: str, refresh_token: str):
        self.path = path
        self.origin = hashlib.sha256(refresh_token.encode()).hexdigest()[:16]
        self.access_token, self.refresh_token = access_token, refresh_token
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable Zalo token file %s: %s", path, e)
            return
        if stored.get("origin") == self.origin or not refresh_token:
            self.access_token = stored.get("access_token", access_token)
            self.refresh_token = stored.get("refresh_token", refresh_token)

    def save(self, access_token: str, refresh_token: str) -> None:
        """Keep a refreshed pair: written to a private temporary file, then renamed over the old one."""
        self.access_token, self.refresh_token = access_token, refresh_token
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"access_token": access_token, "refresh_token": refresh_token, "origin": self.origin,
                           "saved": int(time.time())})
        fd, tmp = tempfile.mkstemp(prefix=".zalo-tokens-", dir=self.path.parent)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# --- the OA API client ---

class ZaloClient:
    """Sends OA messages, refreshing an expired access token once per failed call."""

    def __init__(self, session: aiohttp.ClientSession, secrets: Secrets, tokens: TokenStore,
                 api_url: str, oauth_url: str, attempts: int = 3, backoff: float = 0.5, max_pause: float = 5.0):
        self.session, self.secrets, self.tokens = session, secrets, tokens
        self.api_url, self.oauth_url = api_url.rstrip("/"), oauth_url.rstrip("/")
        self.attempts, self.backoff, self.max_pause = max(1, attempts), backoff, max_pause
        self._refreshing = asyncio.Lock()

    async def send(self, user_id: str, message: dict) -> dict:
        """Send one message to a follower; returns Zalo's `data`; raises ZaloError."""
        body = {"recipient": {"user_id": user_id}, "message": message}
        used = self.tokens.access_token
        result = await self._post_message(body, used)
        if result.get("error") == EXPIRED:
            await self.refresh(used)
            result = await self._post_message(body, self.tokens.access_token)
        if result.get("error", -1) != 0:
            raise ZaloError(int(result.get("error", -1)), str(result.get("message", "")))
        return result.get("data") or {}

    async def _post_message(self, body: dict, token: str) -> dict:
        """One message, tried up to `attempts` times on transient faults; the last fault is raised."""
        for attempt in range(1, self.attempts + 1):
            pause = self.backoff * 2 ** (attempt - 1)
            try:
                async with self.session.post(f"{self.api_url}/v3.0/oa/message/cs", json=body,
                                             headers={"access_token": token}) as response:
                    if response.status in RETRY_STATUSES and attempt < self.attempts:
                        pause = max(pause, _retry_after(response.headers.get("Retry-After")))
                        log.warning("Zalo OA API answered HTTP %s; sending again in %.1f s (attempt %d of %d)",
                                    response.status, min(pause, self.max_pause), attempt, self.attempts)
                    else:
                        response.raise_for_status()
                        result = await response.json(content_type=None)
                        if not isinstance(result, dict):
                            raise ValueError(f"Zalo OA API answered JSON that is not an object: {result!r:.80}")
                        return result
            except (TimeoutError, aiohttp.ClientConnectionError) as e:
                if attempt == self.attempts:
                    raise
                log.warning("Zalo OA API unreachable (%s); sending again in %.1f s (attempt %d of %d)",
                            type(e).__name__, min(pause, self.max_pause), attempt, self.attempts)
            await asyncio.sleep(min(pause, self.max_pause))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def refresh(self, expired: str) -> None:
        """Get a new token pair (once, however many sends found the token expired) and store it."""
        async with self._refreshing:
            if self.tokens.access_token != expired:
                return  # another send refreshed it meanwhile
            form = {"refresh_token": self.tokens.refresh_token, "app_id": self.secrets.app_id,
                    "grant_type": "refresh_token"}
            async with self.session.post(f"{self.oauth_url}/v4/oa/access_token", data=form,
                                         headers={"secret_key": self.secrets.app_secret}) as response:
                response.raise_for_status()
                result = await response.json(content_type=None)
            if not result.get("access_token") or not result.get("refresh_token"):
                raise ZaloError(int(result.get("error", -1)),
                                str(result.get("error_description") or result.get("error_name") or result))
            self.tokens.save(result["access_token"], result["refresh_token"])
            log.info("Zalo access token refreshed")


# Zalo's codes for a citizen the OA may no longer message (unfollowed, or silent past the reply window).
UNREACHABLE = frozenset({-213, -230})


def zalo_sender(client: ZaloClient):
    """`send(address, text)` for the handoff Courier: a staff reply as Zalo text messages."""
    from bot.service.handoff import Undeliverable

    async def send(user_id: str, text: str) -> None:
        try:
            for part in split_text(text):
                await client.send(user_id, {"text": part})
        except ZaloError as e:
            if e.code in UNREACHABLE:
                raise Undeliverable(str(e)) from e
            raise  # anything else: the reply stays queued and is tried again

    return send


# --- the webhook ---

def _retry_after(value: str | None) -> float:
    """Seconds from a `Retry-After` header given in seconds; 0 when absent or not a number."""
    try:
        return max(0.0, float(value or 0))
    except ValueError:
        return 0.0


class Recent:
    """The last `size` keys seen: Zalo retries a delivery it thinks failed."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def seen(self, key: str) -> bool:
        """True if the key was seen before; remembers it otherwise."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return False


class ZaloWebhook:
    """The aiohttp handler of Zalo OA events."""

    def __init__(self, desk: Desk, secrets: Secrets, client: ZaloClient, max_age: int = 300,
                 clock: Callable[[], float] = time.time):
        self.desk, self.secrets, self.client = desk, secrets, client
        self.max_age, self.clock = max_age, clock
        self.recent = Recent()
        self.tasks: set[asyncio.Task] = set()

    async def handle(self, request: web.Request) -> web.Response:
        """Verify, acknowledge at once, answer in a background task."""
        body = await request.read()
        given = request.headers.get("X-ZEvent-Signature", "")
        if not given:
            log.warning("Zalo webhook without a signature from %s", request.remote)
            return web.json_response({"error": "missing X-ZEvent-Signature"}, status=401)
        try:
            event = json.loads(body)
            timestamp = str(event["timestamp"])
            stamp = int(timestamp)
        except (ValueError, TypeError, KeyError, RecursionError):
            return web.json_response({"error": "malformed event: JSON with a timestamp expected"}, status=400)
        expected = signature(self.secrets.app_id, body, timestamp, self.secrets.oa_secret_key)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            log.warning("Zalo webhook with a bad or missing signature from %s", request.remote)
            return web.json_response({"error": "invalid signature"}, status=401)
        if abs(self.clock() * 1000 - stamp) > self.max_age * 1000:
            log.warning("Zalo webhook replayed or stale (timestamp %s)", timestamp)
            return web.json_response({"error": "stale timestamp (replay)"}, status=401)
        if str(event.get("app_id", self.secrets.app_id)) != self.secrets.app_id:
            return web.json_response({"error": "unknown app"}, status=401)
        if self.recent.seen(_event_key(event, timestamp)):
            return web.json_response({"status": "duplicate"})
        task = asyncio.get_running_loop().create_task(self.process(event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response({"status": "ok"})

    async def process(self, event: dict) -> None:
        """Answer one verified event; failures are logged, and the citizen gets an apology when possible."""
        name = str(event.get("event_name", ""))
        user = ""
        step = "before sending"
        try:
            if name == "follow":
                user = str((event.get("follower") or {}).get("id", ""))
                if user:
                    await self.client.send(user, {"text": WELCOME})
                return
            if name in SILENT or not name.startswith("user_send_"):
                return
            user = str((event.get("sender") or {}).get("id", ""))
            if not user:
                return
            if name != "user_send_text":
                await self.client.send(user, {"text": NON_TEXT})
                return
            text = str((event.get("message") or {}).get("text", ""))
            if text.startswith(QUERY_PREFIX):  # a follow-up button
                text = text[len(QUERY_PREFIX):]
            reply = await self.desk.aask("zalo", user, text)
            messages = reply_messages(reply)
            for n, message in enumerate(messages, 1):
                step = f"message {n} of {len(messages)} of answer {reply.question_id or '(not logged)'}"
                await self.client.send(user, message)
        except Exception:
            error = error_id()
            log.exception("error %s: Zalo event %s for %s not answered (%s failed)", error, name, user or "?", step)
            if user:
                try:
                    await self.client.send(user, {"text": apology(self.desk.assistant.hotline, error)})
                except Exception:
                    log.warning("the apology to %s was not sent either", user)

    async def drain(self) -> None:
        """Let the answers being sent finish (on shutdown)."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _event_key(event: dict, timestamp: str) -> str:
    msg_id = (event.get("message") or {}).get("msg_id") if isinstance(event.get("message"), dict) else None
    if msg_id:
        return f"msg:{msg_id}"
    who = (event.get("follower") or event.get("sender") or {}).get("id", "")
    return f"{event.get('event_name')}:{who}:{timestamp}"


ZALO = web.AppKey("zalo", ZaloWebhook)  # the ZaloWebhook, created when the server starts
NOT_CONFIGURED = "Kênh Zalo chưa được cấu hình (thiếu ZALO_APP_ID, ZALO_OA_SECRET_KEY)."


def mount(app: web.Application, cfg: Config, desk: Desk, env: Mapping[str, str] | None = None) -> None:
    """`POST /zalo/webhook` on the web server; without ZALO_APP_ID and ZALO_OA_SECRET_KEY it answers 503."""
    secrets = Secrets.from_env(env)
    if secrets is None:
        async def not_configured(request: web.Request) -> web.Response:
            return web.json_response({"error": NOT_CONFIGURED}, status=503,
                                     dumps=lambda x: json.dumps(x, ensure_ascii=False))

        app.router.add_post("/zalo/webhook", not_configured)
        return

    async def zalo_context(app: web.Application):
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.zalo.timeout))
        tokens = TokenStore(cfg.data_dir / "zalo-tokens.json", secrets.access_token, secrets.refresh_token)
        client = ZaloClient(session, secrets, tokens, cfg.zalo.api_url, cfg.zalo.oauth_url)
        app[ZALO] = ZaloWebhook(desk, secrets, client, cfg.zalo.max_age)
        stopping, courier = asyncio.Event(), None
        if desk.handoff is not None:  # staff replies to citizens who asked for a person on Zalo
            courier = asyncio.create_task(Courier(desk.handoff, "zalo", zalo_sender(client)).run(stopping))
        yield
        stopping.set()
        if courier is not None:
            await courier  # a delivery pass under way is finished first
        await app[ZALO].drain()
        await session.close()

    async def zalo_webhook(request: web.Request) -> web.Response:
        return await request.app[ZALO].handle(request)

    app.cleanup_ctx.append(zalo_context)
    app.router.add_post("/zalo/webhook", zalo_webhook)


CHANNEL = ChannelInfo("zalo", "Zalo", "#0068FF", share=0.35, section="zalo", mount=mount)
