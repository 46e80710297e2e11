"""Zalo Official Account channel: verify webhook events, answer in the background, send through the OA API.

Zalo posts every event to one webhook URL with `X-ZEvent-Signature: mac=<hex sha256(app_id + raw body + timestamp +
OA secret key)>` (a plain hash, not an HMAC), expects a 200 within about two seconds and retries otherwise, for hours
after an outage, before it disables the webhook. So every correctly signed event gets a 200, however old; the inbox
(`bot.service.inbox`, SQLite) takes each event once by its `msg_id`, across restarts, so a retried or replayed event
is never answered twice. Only a message younger than `[zalo] answer_max_age` is answered; an older one is logged for
staff review (kind "late"). A forged or altered event gets 401.

Answers go to `POST {api_url}/v3.0/oa/message/cs` with an `access_token` header, as replies to the citizen's message
(`recipient.message_id`): Zalo counts a message that names only `recipient.user_id` as a proactive message, billed and
limited, and one that names the citizen's message as a reply, free up to 8 within 48 hours of it. Zalo OA help centre:
"Các loại tin của Zalo Official Account" (https://zalooa.freshdesk.com/support/solutions/articles/64000261136) and
"Vì sao tôi không thể gửi tin phản hồi qua ứng dụng thứ 3" (…/articles/64000263278): "Nếu tin gửi đi có chỉ user_id và
không có message_id thì tin sẽ được tính là tin chủ động". Consultation ("cs") messages reach only citizens who
interacted with the OA in the last 7 days; Zalo reports in `data.quota.quota_type` which quota a message used
("reply" for a reply). Zalo reports errors in the body with HTTP 200 (`error` != 0). An expired access token (-216) is
refreshed with the refresh token (`POST {oauth_url}/v4/oa/access_token`), the new pair is stored in the data folder
(mode 0600, atomic), and the message is sent again once.

A message is sent again only when the failure proves Zalo did not take it: a refused connection, HTTP 429 or 503
(a 429's `Retry-After` is honoured up to a cap), or an error code in Zalo's body; a bounded number of times, with
growing pauses. A timeout, a connection lost after the request went out, another 5xx or a reply that is not JSON
may hide a delivered message: it is logged and not sent again, and the citizen gets no apology on top of an answer
they may have received.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.config import Config
from bot.engine.answer import NOT_ANSWERED
from bot.engine.phrases import NON_TEXT, apology, error_id
from bot.service.desk import Desk, Reply
from bot.service.handoff import BUTTON as HANDOFF_BUTTON
from bot.service.handoff import Courier, MaybeDelivered
from bot.service.inbox import Inbox
from bot.service.store import store_errors

from . import ChannelInfo
from .render import short, split_text, zalo_text

log = logging.getLogger("bot.zalo")

MAX_BUTTONS = 5
BUTTON_TITLE = 100
BUTTON_PAYLOAD = 1000
QUERY_PREFIX = "#"  # oa.query.hide payloads come back as user_send_text "#<question>"
EXPIRED = -216
# Statuses by which the server says it did not take the request (too many requests; unavailable): safe to send again.
NOT_TAKEN = frozenset({429, 503})
MESSAGE_KEY = "msg:"  # the inbox key of a citizen's message: this prefix, then its msg_id
REPLY_WINDOW = 47 * 3600  # seconds after a citizen's message within which a message to them is a reply (Zalo: 48 h)
# 👍 / 👎 on Zalo: quick-reply buttons (their payload comes back as the citizen's text) or typed `#tot` / `#chuatot`.
FEEDBACK = re.compile(r"^#(tot|chuatot)(?:\s+(\d{1,15}))?$", re.IGNORECASE)
RATED = ("answer", *NOT_ANSWERED)  # answers worth a 👍 / 👎 (not greetings, thanks, busy replies…)
FEEDBACK_ASK = "Câu trả lời có giúp được bạn không? Bấm một nút bên dưới, hoặc nhắn #tot hay #chuatot."
FEEDBACK_THANKS = "Cảm ơn bạn đã góp ý!"
FEEDBACK_UNKNOWN = "Tôi chưa tìm thấy câu trả lời nào của tôi để bạn góp ý. Bạn cứ hỏi, rồi bấm 👍 hoặc 👎 nhé."
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
    """The `message` objects to send, in order; buttons ride on the last one; then, for a logged answer, the 👍 / 👎
    question with its two quick-reply buttons, on a message of its own."""
    messages: list[dict] = [{"text": piece} for piece in split_text(zalo_text(reply))]
    buttons = [] if reply.limited else reply_buttons(reply)
    if buttons and messages:
        messages[-1]["attachment"] = {"type": "template", "payload": {"buttons": buttons}}
    if reply.question_id is not None and reply.answer.kind in RATED and messages:
        messages.append(feedback_message(reply.question_id))
    return messages


def feedback_message(question_id: int) -> dict:
    """The message asking for 👍 / 👎 on one answer: its buttons send `#tot <id>` or `#chuatot <id>` back, hidden."""
    buttons = [{"title": title, "type": "oa.query.hide", "payload": f"#{word} {question_id}"}
               for title, word in (("👍 Hữu ích", "tot"), ("👎 Chưa đúng", "chuatot"))]
    return {"text": FEEDBACK_ASK, "attachment": {"type": "template", "payload": {"buttons": buttons}}}


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


ZALO_TOKEN_LOCK = 4_715_002  # the advisory lock under which one worker at a time refreshes the Zalo token pair


class TokenStore:
    """The current access and refresh tokens; refreshed ones are kept in a 0600 file that survives a restart, or,
    with the PostgreSQL store (`url`), in its `secrets` table, where every worker finds the pair another refreshed.

    The stored pair remembers which initial refresh token it grew from: when an admin puts a new pair in the
    environment (after authorising the app again), the environment wins over the stored pair.
    """

    def __init__(self, path: Path, access_token: str, refresh_token: str, url: str | None = None):
        self.path, self.url = path, url
        self.origin = hashlib.sha256(refresh_token.encode()).hexdigest()[:16]
        self.access_token, self.refresh_token = access_token, refresh_token
        if url is not None:
            return  # read with `load` (async) when the server starts
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable Zalo token file %s: %s", path, e)
            return
        self._adopt(stored.get("access_token"), stored.get("refresh_token"), stored.get("origin"))

    def _adopt(self, access_token: str | None, refresh_token: str | None, origin: str | None) -> None:
        if origin == self.origin or not self.refresh_token:
            self.access_token = access_token or self.access_token
            self.refresh_token = refresh_token or self.refresh_token

    async def _stored(self, conn) -> None:
        cursor = await conn.execute("SELECT value, origin FROM secrets WHERE name = 'zalo'")
        row = await cursor.fetchone()
        if row is not None:
            pair = json.loads(row[0])
            self._adopt(pair.get("access_token"), pair.get("refresh_token"), row[1])

    async def load(self) -> None:
        """The pair another worker stored (PostgreSQL store only)."""
        if self.url is not None:
            import psycopg

            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                await self._stored(conn)

    async def refreshed(self, expired: str, refresh: Callable[[str], Awaitable[tuple[str, str]]]) -> None:
        """Replace the pair whose access token `expired` by `await refresh(refresh_token)`'s, unless another
        refresh (of this worker, or, under the store's advisory lock, of any worker) already did: Zalo refresh tokens
        are single-use, so two workers must never send the same one."""
        if self.url is None:
            if self.access_token == expired:
                self.save(*await refresh(self.refresh_token))
            return
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", [ZALO_TOKEN_LOCK])
            await self._stored(conn)
            if self.access_token != expired:
                return  # another worker refreshed it meanwhile
            access_token, refresh_token = await refresh(self.refresh_token)
            self.access_token, self.refresh_token = access_token, refresh_token
            await conn.execute(
                "INSERT INTO secrets (name, value, origin, saved_at) VALUES ('zalo', %s, %s, %s) ON CONFLICT (name) "
                "DO UPDATE SET value = excluded.value, origin = excluded.origin, saved_at = excluded.saved_at",
                [json.dumps({"access_token": access_token, "refresh_token": refresh_token}), self.origin,
                 time.time()])

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

class NotDelivered(RuntimeError):
    """Zalo did not take the message, on every attempt (refused connections, HTTP 429 or 503)."""


class ZaloClient:
    """Sends OA messages, refreshing an expired access token once per failed call."""

    def __init__(self, session: aiohttp.ClientSession, secrets: Secrets, tokens: TokenStore,
                 api_url: str, oauth_url: str, attempts: int = 3, backoff: float = 0.5, max_pause: float = 5.0):
        self.session, self.secrets, self.tokens = session, secrets, tokens
        self.api_url, self.oauth_url = api_url.rstrip("/"), oauth_url.rstrip("/")
        self.attempts, self.backoff, self.max_pause = max(1, attempts), backoff, max_pause
        self._refreshing = asyncio.Lock()

    async def send(self, user_id: str, message: dict, reply_to: str | None = None) -> dict:
        """Send one message to a citizen: as a reply to their message `reply_to` (Zalo's reply quota) when given,
        else to `user_id` (a proactive message). Returns Zalo's `data`; raises ZaloError (Zalo refused it),
        NotDelivered (Zalo did not take it) or MaybeDelivered (it may have been delivered: do not send it again)."""
        recipient = {"message_id": reply_to} if reply_to else {"user_id": user_id}
        body = {"recipient": recipient, "message": message}
        used = self.tokens.access_token
        result = await self._post_message(body, used)
        if result.get("error") == EXPIRED:
            await self.refresh(used)
            result = await self._post_message(body, self.tokens.access_token)
        if result.get("error", -1) != 0:
            raise ZaloError(int(result.get("error", -1)), str(result.get("message", "")))
        data = result.get("data") or {}
        quota = (data.get("quota") or {}).get("quota_type") if isinstance(data, dict) else None
        if reply_to and quota not in (None, "reply"):
            log.warning("Zalo counted a reply to %s as %s, not as a reply", user_id, quota)
        return data

    async def _post_message(self, body: dict, token: str) -> dict:
        """One message, sent again (up to `attempts` times) only after a failure that proves Zalo did not take it."""
        for attempt in range(1, self.attempts + 1):
            pause = self.backoff * 2 ** (attempt - 1)
            try:
                async with self.session.post(f"{self.api_url}/v3.0/oa/message/cs", json=body,
                                             headers={"access_token": token}) as response:
                    if response.status in NOT_TAKEN:
                        if attempt == self.attempts:
                            raise NotDelivered(f"Zalo OA API answered HTTP {response.status} {response.reason} "
                                               f"{self.attempts} times")
                        pause = max(pause, _retry_after(response.headers.get("Retry-After")))
                        log.warning("Zalo OA API answered HTTP %s; sending again in %.1f s (attempt %d of %d)",
                                    response.status, min(pause, self.max_pause), attempt, self.attempts)
                    elif 400 <= response.status < 500:  # refused as a request: nothing was delivered, nor will be
                        raise NotDelivered(f"Zalo OA API answered HTTP {response.status} {response.reason}")
                    elif not 200 <= response.status < 300:
                        raise MaybeDelivered(f"Zalo OA API answered HTTP {response.status} {response.reason}")
                    else:
                        try:
                            result = await response.json(content_type=None)
                        except ValueError as e:
                            raise MaybeDelivered(f"Zalo OA API answered HTTP 200 with a body that is not JSON: "
                                                 f"{e}") from e
                        if not isinstance(result, dict):
                            raise MaybeDelivered(f"Zalo OA API answered JSON that is not an object: {result!r:.80}")
                        return result
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
                # no connection was made, so no request went out
                if attempt == self.attempts:
                    raise NotDelivered(f"Zalo OA API unreachable {self.attempts} times: {e}") from e
                log.warning("Zalo OA API refused the connection (%s); sending again in %.1f s (attempt %d of %d)",
                            type(e).__name__, min(pause, self.max_pause), attempt, self.attempts)
            except (TimeoutError, aiohttp.ClientError) as e:
                # the request went out: Zalo may have delivered the message before the connection failed
                raise MaybeDelivered(f"{type(e).__name__} after the request was sent: {e}") from e
            await asyncio.sleep(min(pause, self.max_pause))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    async def refresh(self, expired: str) -> None:
        """Get a new token pair (once, however many sends, in however many workers, found the token expired) and
        store it."""
        async with self._refreshing:
            await self.tokens.refreshed(expired, self._refresh)

    async def _refresh(self, refresh_token: str) -> tuple[str, str]:
        form = {"refresh_token": refresh_token, "app_id": self.secrets.app_id, "grant_type": "refresh_token"}
        async with self.session.post(f"{self.oauth_url}/v4/oa/access_token", data=form,
                                     headers={"secret_key": self.secrets.app_secret}) as response:
            response.raise_for_status()
            result = await response.json(content_type=None)
        if not result.get("access_token") or not result.get("refresh_token"):
            raise ZaloError(int(result.get("error", -1)),
                            str(result.get("error_description") or result.get("error_name") or result))
        log.info("Zalo access token refreshed")
        return result["access_token"], result["refresh_token"]


# Zalo's codes for a citizen the OA may no longer message (unfollowed, or silent past the reply window).
UNREACHABLE = frozenset({-213, -230})


def zalo_sender(client: ZaloClient, inbox: Inbox | None = None, clock: Callable[[], float] = time.time):
    """`send(address, text)` for the handoff Courier: a staff reply as Zalo text messages, sent as a reply to the
    citizen's latest message when it is recent enough for Zalo to count it as one (else as a proactive message)."""
    from bot.service.handoff import Undeliverable

    async def send(user_id: str, text: str) -> None:
        reply_to = None
        if inbox is not None:
            reply_to = await asyncio.to_thread(inbox.latest, "zalo", user_id, clock() - REPLY_WINDOW, MESSAGE_KEY)
        sent = 0
        try:
            for part in split_text(text):
                await client.send(user_id, {"text": part}, reply_to=reply_to)
                sent += 1
        except ZaloError as e:
            if e.code in UNREACHABLE:
                raise Undeliverable(str(e)) from e
            if sent:  # the first parts arrived: sending the whole reply again would repeat them
                raise MaybeDelivered(f"part {sent + 1} failed: {e}") from e
            raise  # anything else: the reply stays queued and is tried again
        except NotDelivered as e:
            if sent:
                raise MaybeDelivered(f"part {sent + 1} failed: {e}") from e
            raise

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

    def __init__(self, desk: Desk, secrets: Secrets, client: ZaloClient, inbox: Inbox, answer_max_age: int = 3600,
                 clock: Callable[[], float] = time.time):
        self.desk, self.secrets, self.client, self.inbox = desk, secrets, client, inbox
        self.answer_max_age, self.clock = answer_max_age, clock
        self.recent = Recent()  # a fast first check; the inbox is the one that survives a restart
        self.last_question: OrderedDict[str, int] = OrderedDict()  # citizen → their last logged question (#tot)
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
        if str(event.get("app_id", self.secrets.app_id)) != self.secrets.app_id:
            return web.json_response({"error": "unknown app"}, status=401)
        # Genuine from here on: always 200, or Zalo retries it for hours and then disables the webhook.
        key = _event_key(event, timestamp)
        if self.recent.seen(key):
            return web.json_response({"status": "duplicate"})
        age = self.clock() - stamp / 1000
        late = age > self.answer_max_age
        try:
            new = await asyncio.to_thread(self.inbox.take, "zalo", key, _who(event), stamp / 1000,
                                          "late" if late else "new")
        except store_errors() as e:  # a broken inbox must not silence the bot: answer, deduplicated in memory only
            log.error("Zalo inbox unavailable (%s: %s); event %s taken without a lasting record", type(e).__name__,
                      e, key)
            new = True
        if not new:
            return web.json_response({"status": "duplicate"})
        if late:
            self._late(event, age)
            return web.json_response({"status": "late"})
        task = asyncio.get_running_loop().create_task(self.process(event))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response({"status": "ok"})

    def _late(self, event: dict, age: float) -> None:
        """A genuine event too old to answer (Zalo delivered it after an outage): logged for staff, not answered."""
        name = str(event.get("event_name", ""))
        log.warning("Zalo event %s sent %.0f s ago (more than [zalo] answer_max_age = %d s): not answered%s", name,
                    age, self.answer_max_age, ", logged for staff review" if name == "user_send_text" else "")
        if name == "user_send_text":
            text = str((event.get("message") or {}).get("text", ""))
            self.desk.record_late("zalo", _who(event), text[len(QUERY_PREFIX):] if text.startswith(QUERY_PREFIX)
                                  else text)

    async def process(self, event: dict) -> None:
        """Answer one verified event; failures are logged, and the citizen gets an apology when it is sure that
        the answer did not reach them."""
        name = str(event.get("event_name", ""))
        user = _who(event)
        message_id = _message_id(event)
        step = "before sending"
        try:
            if name == "follow":
                if user:
                    await self.client.send(user, {"text": WELCOME})
                return
            if name in SILENT or not name.startswith("user_send_") or not user:
                return
            if name != "user_send_text":
                await self.client.send(user, {"text": NON_TEXT}, reply_to=message_id)
                return
            text = str((event.get("message") or {}).get("text", ""))
            rating = FEEDBACK.match(text.strip())
            if rating:
                step = "the feedback reply"
                await self.rate(user, message_id, 1 if rating.group(1).lower() == "tot" else -1,
                                int(rating.group(2)) if rating.group(2) else None)
                return
            if text.startswith(QUERY_PREFIX):  # a follow-up button
                text = text[len(QUERY_PREFIX):]
            reply = await self.desk.aask("zalo", user, text)
            if reply.question_id is not None:
                self.last_question[user] = reply.question_id
                self.last_question.move_to_end(user)
                while len(self.last_question) > 100_000:
                    self.last_question.popitem(last=False)
            messages = reply_messages(reply)
            for n, message in enumerate(messages, 1):
                step = f"message {n} of {len(messages)} of answer {reply.question_id or '(not logged)'}"
                try:
                    await self.client.send(user, message, reply_to=message_id)
                except MaybeDelivered as e:  # the citizen may have it: never sent twice; the next parts still go
                    log.warning("Zalo %s to %s may not have been delivered (%s); not sent again", step, user, e)
        except MaybeDelivered as e:
            log.warning("Zalo event %s for %s: %s may not have been delivered (%s); not sent again, no apology",
                        name, user or "?", step, e)
        except Exception:
            error = error_id()
            log.exception("error %s: Zalo event %s for %s not answered (%s failed)", error, name, user or "?", step)
            if user and name != "follow":
                try:
                    await self.client.send(user, {"text": apology(self.desk.assistant.hotline, error)},
                                           reply_to=message_id)
                except Exception:
                    log.warning("the apology to %s was not sent either", user)

    async def rate(self, user: str, message_id: str | None, value: int, question_id: int | None) -> None:
        """👍 / 👎 from a citizen, on one of their own answers (their last one when no id is given)."""
        if question_id is None:
            question_id = self.last_question.get(user)
        if question_id is None and self.desk.log is not None and hasattr(self.desk.log, "last_turns"):
            # asked through another worker: their last rated answer, from the shared log
            turns = await self.desk.acall_log(self.desk.log.last_turns, "zalo", user, 5)
            rated = [t["id"] for t in turns if t.get("kind") in RATED]
            question_id = rated[-1] if rated else None
        ok = question_id is not None and await self.desk.afeedback(question_id, value, channel="zalo", user=user)
        message: dict = {"text": FEEDBACK_THANKS if ok else FEEDBACK_UNKNOWN}
        if ok and value == -1 and self.desk.handoff is not None:  # not helped: offer a person
            label, question = HANDOFF_BUTTON
            message["attachment"] = {"type": "template", "payload": {"buttons": [
                {"title": label, "type": "oa.query.hide", "payload": QUERY_PREFIX + question}]}}
        await self.client.send(user, message, reply_to=message_id)

    async def drain(self) -> None:
        """Let the answers being sent finish (on shutdown)."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _who(event: dict) -> str:
    """The citizen an event comes from (the sender of a message, the new follower)."""
    who = event.get("sender") if event.get("event_name") != "follow" else event.get("follower")
    return str((who or {}).get("id", "")) if isinstance(who, dict) else ""


def _message_id(event: dict) -> str | None:
    """The id of the citizen's message an event carries (what an answer replies to), if any."""
    message = event.get("message")
    msg_id = message.get("msg_id") if isinstance(message, dict) else None
    return str(msg_id) if msg_id else None


def _event_key(event: dict, timestamp: str) -> str:
    msg_id = _message_id(event)
    if msg_id:
        return MESSAGE_KEY + msg_id
    return f"{event.get('event_name')}:{_who(event)}:{timestamp}"


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
        store = desk.store  # the PostgreSQL store shared by every worker, or None (SQLite files)
        tokens = TokenStore(cfg.data_dir / "zalo-tokens.json", secrets.access_token, secrets.refresh_token,
                            url=store.url if store is not None else None)
        await tokens.load()
        client = ZaloClient(session, secrets, tokens, cfg.zalo.api_url, cfg.zalo.oauth_url)
        inbox = await asyncio.to_thread(Inbox.open, cfg, env, store)
        app[ZALO] = ZaloWebhook(desk, secrets, client, inbox, cfg.zalo.answer_max_age)
        stopping, courier = asyncio.Event(), None
        if desk.handoff is not None:  # staff replies to citizens who asked for a person on Zalo
            courier = asyncio.create_task(Courier(desk.handoff, "zalo", zalo_sender(client, inbox)).run(stopping))
        yield
        stopping.set()
        if courier is not None:
            await courier  # a delivery pass under way is finished first
        await app[ZALO].drain()
        await session.close()
        inbox.close()

    async def zalo_webhook(request: web.Request) -> web.Response:
        return await request.app[ZALO].handle(request)

    app.cleanup_ctx.append(zalo_context)
    app.router.add_post("/zalo/webhook", zalo_webhook)


CHANNEL = ChannelInfo("zalo", "Zalo", "#0068FF", share=0.35, section="zalo", mount=mount)
