"""A local fake of the Telegram Bot API: an aiohttp server that python-telegram-bot talks to over real HTTP.

It answers like api.telegram.org does — form-encoded or JSON requests to `/bot<token>/<method>`, replies
`{"ok": true, "result": ...}`, errors `{"ok": false, "error_code": ..., "description": ...}` (429 with
`parameters.retry_after`, 5xx, 400 for bad HTML, over-long text, bad buttons, unknown callback queries) — records
everything the bot sent, lets a test play citizens (`text`, `sticker`, `click`, `edit`…) and inject faults (`fail`;
`hang_after_delivery`: the request is served, then its answer never comes, as when a response is lost on the way
back).
Anything the real API would refuse, and any method it does not implement, is also noted in `problems`, so a test
can assert that the bot never did anything unexpected.

    fake = await FakeTelegram().start()
    app = Application.builder().token(fake.token).base_url(fake.base_url).build()
    ...
    fake.text(user=1001, text="làm thẻ căn cước cần gì")
    reply = await fake.wait_for_message(chat_id=1001)
    await fake.close()

All methods run on the event loop that started the server.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

TOKEN = "123456789:AAFakeTokenForTestsOnly-abcdefghijk"
BOT_ID = 123456789
# Tags Telegram's HTML parse mode accepts (https://core.telegram.org/bots/api#html-style).
HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "tg-emoji",
             "code", "pre", "blockquote"}
ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-z-]+(?:=\"[^\"]*\"|='[^']*'|=[^\s>]+)?)*)\s*>")
MAX_TEXT = 4096
COUNTED = {"sendmessage", "sendphoto", "senddocument", "copymessage", "forwardmessage"}  # messages, for limits
# Parameters each implemented method accepts (anything else is a problem: the bot sends what it should not).
METHODS: dict[str, set[str]] = {
    "getme": set(),
    "getupdates": {"offset", "limit", "timeout", "allowed_updates"},
    "deletewebhook": {"drop_pending_updates"},
    "setwebhook": {"url", "certificate", "ip_address", "max_connections", "allowed_updates", "drop_pending_updates",
                   "secret_token"},
    "sendmessage": {"chat_id", "text", "parse_mode", "entities", "link_preview_options", "disable_notification",
                    "protect_content", "reply_parameters", "reply_markup", "message_thread_id",
                    "allow_sending_without_reply", "reply_to_message_id", "disable_web_page_preview"},
    "editmessagereplymarkup": {"chat_id", "message_id", "inline_message_id", "reply_markup"},
    "answercallbackquery": {"callback_query_id", "text", "show_alert", "url", "cache_time"},
    "sendchataction": {"chat_id", "action", "message_thread_id"},
}
CHAT_ACTIONS = {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
                "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note"}


class ApiError(Exception):
    """An error reply, exactly as the Bot API shapes it."""

    def __init__(self, code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def response(self) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return web.json_response(body, status=self.code)


@dataclass
class Call:
    """One request the bot made, after decoding; `error` is the description when it was refused."""

    method: str
    params: dict[str, Any]
    at: float
    error: str = ""


@dataclass
class Fault:
    """A queued failure for one method: the next `times` calls get `status` instead of being served."""

    status: int
    times: int
    retry_after: int = 1


@dataclass
class Sent:
    """A message the bot sent, as the fake stored it."""

    message_id: int
    chat_id: int
    html: str  # the text as sent (HTML when parse_mode is HTML)
    text: str  # what the citizen sees (tags removed, entities decoded)
    reply_markup: dict | None
    at: float
    edits: list[dict | None] = field(default_factory=list)  # reply markups set later, in order

    @property
    def buttons(self) -> list[dict]:
        """All inline buttons, row after row."""
        return [b for row in (self.reply_markup or {}).get("inline_keyboard", []) for b in row]


def html_text(text: str) -> str:
    """What Telegram shows for an HTML message; raises ApiError where Telegram refuses to parse it."""
    stack: list[str] = []
    out, pos = [], 0
    for m in re.finditer(r"<[^<]*?>|<|&[^&;\s<]*;?", text):
        out.append(text[pos:m.start()])
        pos = m.end()
        token = m.group(0)
        if token.startswith("&"):
            if not ENTITY.fullmatch(token):
                raise ApiError(400, f"Bad Request: can't parse entities: Unsupported entity {token!r} at byte "
                                    f"offset {len(text[:m.start()].encode())}")
            out.append(html.unescape(token))
            continue
        tag = TAG.fullmatch(token)
        if tag is None or tag.group(2).lower() not in HTML_TAGS:
            raise ApiError(400, "Bad Request: can't parse entities: Unsupported start tag "
                                f"\"{token[1:20]}\" at byte offset {len(text[:m.start()].encode())}")
        closing, name = tag.group(1), tag.group(2).lower()
        if closing:
            if not stack or stack[-1] != name:
                raise ApiError(400, f"Bad Request: can't parse entities: Unmatched end tag at byte offset "
                                    f"{len(text[:m.start()].encode())}, expected \"</{stack[-1] if stack else ''}>\", "
                                    f"found \"</{name}>\"")
            stack.pop()
        else:
            if name == "a" and "href=" not in tag.group(3):
                raise ApiError(400, "Bad Request: can't parse entities: Can't find end of a URL")
            stack.append(name)
    out.append(text[pos:])
    if stack:
        raise ApiError(400, f"Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
                            f"\"{stack[-1]}\"")
    return "".join(out)


def check_markup(markup: Any) -> None:
    """Refuse an inline keyboard the way Telegram does."""
    if markup is None:
        return
    if isinstance(markup, dict) and "force_reply" in markup:  # ForceReply: the client opens a reply to the message
        if markup["force_reply"] is not True or set(markup) - {"force_reply", "input_field_placeholder", "selective"}:
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        if not 1 <= len(str(markup.get("input_field_placeholder", "x"))) <= 64:
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        return
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise ApiError(400, "Bad Request: can't parse inline keyboard button: field \"inline_keyboard\" of the "
                            "InlineKeyboardMarkup must be an Array of Arrays")
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not str(button.get("text", "")).strip():
                raise ApiError(400, "Bad Request: can't parse inline keyboard button: Text buttons are unallowed "
                                    "in the inline keyboard")
            if "callback_data" in button:
                if not 1 <= len(button["callback_data"].encode()) <= 64:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            elif "url" in button:
                if not re.match(r"^(https?|tg)://\S+$", button["url"]):
                    raise ApiError(400, "Bad Request: BUTTON_URL_INVALID")
            else:
                raise ApiError(400, "Bad Request: can't parse inline keyboard button: InlineKeyboardButton must "
                                    "have exactly one optional field")


class FakeTelegram:
    """The fake Bot API server; see the module docstring."""

    def __init__(self, token: str = TOKEN, username: str = "tro_ly_cchc_bot", *, limits: bool = False):
        self.token = token
        # Telegram's flood limits on messages (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-
        # avoid-this): about 30 a second overall, 1 a second in one chat, 20 a minute in one group; above them the
        # API answers 429 with parameters.retry_after. With `limits`, the fake enforces them on every message sent.
        self.limits = limits
        self.limited = 0  # messages refused with 429 for going over a limit
        self._message_times: list[float] = []
        self._chat_times: dict[int, list[float]] = {}
        self.bot = {"id": int(token.split(":")[0]), "is_bot": True, "first_name": "Trợ lý CCHC", "username": username,
                    "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
        self.username = username
        self.calls: list[Call] = []
        self.problems: list[str] = []  # what the real API would refuse, or methods the fake does not know
        self.sent: list[Sent] = []
        self.webhook: dict[str, Any] = {}
        self.confirmed = 0  # every update below this id was acknowledged by a getUpdates offset
        self._updates: list[dict] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._open_queries: set[str] = set()
        self._faults: dict[str, list[Fault]] = {}
        self._hangs: dict[str, int] = {}  # method → how many of its next calls hang after being served
        self.hang_seconds = 30.0
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- the server -------------------------------------------------------------------------------------------
    async def start(self) -> FakeTelegram:
        """Listen on 127.0.0.1, a free port."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        """Stop serving; long polls in progress return at once."""
        self._closing = True
        await self._notify()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """What python-telegram-bot's `base_url` should be."""
        return f"http://127.0.0.1:{self.port}/bot"

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        if request.match_info["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        params = await self._params(request)
        call = Call(method, params, time.monotonic())
        self.calls.append(call)
        try:
            if method not in METHODS:
                self.problems.append(f"unknown method {request.match_info['method']}")
                raise ApiError(404, "Not Found")
            unknown = set(params) - METHODS[method]
            if unknown:
                self.problems.append(f"{method}: unknown parameters {sorted(unknown)}")
            faults = self._faults.get(method)
            if faults:
                fault = faults[0]
                fault.times -= 1
                if fault.times <= 0:
                    faults.pop(0)
                if fault.status == 429:
                    raise ApiError(429, f"Too Many Requests: retry after {fault.retry_after}", fault.retry_after)
                raise ApiError(fault.status, {500: "Internal Server Error", 502: "Bad Gateway",
                                              503: "Service Unavailable", 504: "Gateway Timeout"}.get(
                                                  fault.status, "Internal Server Error"))
            if self.limits and method in COUNTED:
                self._flood_control(params)
            result = await getattr(self, f"_{method}")(params)
            if self._hangs.get(method):
                self._hangs[method] -= 1
                call.error = "served, then hung"
                await self._notify()
                async with self._changed:  # until the client gave up (or the fake closes)
                    try:
                        await asyncio.wait_for(self._changed.wait_for(lambda: self._closing), self.hang_seconds)
                    except TimeoutError:
                        pass
        except ApiError as e:
            call.error = e.description
            if e.code == 400:
                self.problems.append(f"{method}: {e.description}")
            await self._notify()
            return e.response()
        await self._notify()
        return web.json_response({"ok": True, "result": result})

    def _flood_control(self, params: dict) -> None:
        """Refuse (429) a message over 30 a second overall, 1 a second in a chat or 20 a minute in a group."""
        now = time.monotonic()
        overall = self._message_times
        while overall and overall[0] <= now - 1.0:
            overall.pop(0)
        try:
            chat = int(params.get("chat_id", 0))
        except (TypeError, ValueError):
            chat = 0
        window, most = (60.0, 20) if chat < 0 else (1.0, 1)
        times = self._chat_times.setdefault(chat, [])
        while times and times[0] <= now - window:
            times.pop(0)
        if len(overall) >= 30 or len(times) >= most:
            self.limited += 1
            wait = max(overall[0] + 1.0 if len(overall) >= 30 else 0, times[0] + window if len(times) >= most else 0)
            retry_after = max(1, int(wait - now + 0.999))
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)
        overall.append(now)
        times.append(now)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            body = await request.json()
            return dict(body) if isinstance(body, dict) else {}
        form = dict(await request.post()) if request.can_read_body else {}
        form.update(request.query)
        params: dict[str, Any] = {}
        for key, value in form.items():
            value = str(value)
            if key in ("text", "callback_query_id", "url", "secret_token", "parse_mode", "action", "ip_address"):
                params[key] = value
            else:  # numbers, booleans, arrays and objects come JSON-encoded, as the real API reads them
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    params[key] = value
        return params

    # --- methods ----------------------------------------------------------------------------------------------
    async def _getme(self, params: dict) -> dict:
        return self.bot

    async def _deletewebhook(self, params: dict) -> bool:
        self.webhook = {}
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _setwebhook(self, params: dict) -> bool:
        url = str(params.get("url", ""))
        if url and not url.startswith("https://"):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token", "")
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = {"url": url, "secret_token": secret, "allowed_updates": params.get("allowed_updates")}
        return True

    async def _getupdates(self, params: dict) -> list[dict]:
        if self.webhook.get("url"):
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
                                "to delete the webhook first")
        offset = int(params.get("offset") or 0)
        if offset:
            self.confirmed = max(self.confirmed, offset)
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        limit = min(100, int(params.get("limit") or 100))
        allowed = params.get("allowed_updates") or []
        deadline = time.monotonic() + float(params.get("timeout") or 0)

        def ready() -> list[dict]:
            return [u for u in self._updates if not allowed or any(k in u for k in allowed)][:limit]

        async with self._changed:
            while not ready() and not self._closing and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
        return ready()

    def _chat(self, chat_id: Any) -> dict:
        try:
            chat_id = int(chat_id)
        except (TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None
        if chat_id < 0:
            return {"id": chat_id, "type": "group", "title": "Nhóm thử"}
        return {"id": chat_id, "type": "private", "first_name": f"Dân {chat_id}"}

    async def _sendmessage(self, params: dict) -> dict:
        chat = self._chat(params.get("chat_id"))
        raw = str(params.get("text", ""))
        text = html_text(raw) if str(params.get("parse_mode", "")).upper() == "HTML" else raw
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        markup = params.get("reply_markup")
        check_markup(markup)
        sent = Sent(next(self._message_ids), chat["id"], raw, text, markup, time.monotonic())
        self.sent.append(sent)
        return self._message_json(sent)

    def _message_json(self, sent: Sent) -> dict:
        message = {"message_id": sent.message_id, "date": int(time.time()), "chat": self._chat(sent.chat_id),
                   "from": {k: self.bot[k] for k in ("id", "is_bot", "first_name", "username")}, "text": sent.text}
        markup = sent.edits[-1] if sent.edits else sent.reply_markup
        if markup and markup.get("inline_keyboard"):
            message["reply_markup"] = markup
        return message

    async def _editmessagereplymarkup(self, params: dict) -> dict:
        chat_id, message_id = params.get("chat_id"), params.get("message_id")
        sent = next((s for s in self.sent if s.chat_id == chat_id and s.message_id == message_id), None)
        if sent is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        markup = params.get("reply_markup")
        check_markup(markup)
        current = sent.edits[-1] if sent.edits else sent.reply_markup
        if (markup or {}).get("inline_keyboard") == (current or {}).get("inline_keyboard"):
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and reply "
                                "markup are exactly the same as a current content and reply markup of the message")
        sent.edits.append(markup)
        return self._message_json(sent)

    async def _answercallbackquery(self, params: dict) -> bool:
        query_id = params.get("callback_query_id")
        if query_id not in self._open_queries:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self._open_queries.discard(query_id)
        if len(str(params.get("text", ""))) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    async def _sendchataction(self, params: dict) -> bool:
        self._chat(params.get("chat_id"))
        if params.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    # --- citizens ---------------------------------------------------------------------------------------------
    def user(self, user_id: int) -> dict:
        """A Telegram user as updates carry it."""
        return {"id": user_id, "is_bot": False, "first_name": f"Dân {user_id}", "language_code": "vi"}

    def push(self, update: dict) -> int:
        """Queue a raw update (given its `update_id` here) for getUpdates; returns the id."""
        update = {"update_id": next(self._update_ids), **update}
        self._updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return update["update_id"]

    def message(self, user: int, chat: int | None = None, **content: Any) -> dict:
        """A message object from a citizen (chat: their private chat unless given; negative ids are groups)."""
        chat_id = user if chat is None else chat
        return {"message_id": next(self._message_ids), "date": int(time.time()), "chat": self._chat(chat_id),
                "from": self.user(user), **content}

    def text(self, user: int, text: str, *, chat: int | None = None, mention: bool = False,
             reply_to: Sent | None = None) -> int:
        """The citizen types `text` (in a group: `mention` puts @bot first; `reply_to` answers a bot message)."""
        content: dict[str, Any] = {"text": text}
        if mention:
            at = f"@{self.username}"
            content = {"text": f"{at} {text}", "entities": [{"type": "mention", "offset": 0, "length": len(at)}]}
        elif text.startswith("/"):
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        if reply_to is not None:
            content["reply_to_message"] = self._message_json(reply_to)
        return self.push({"message": self.message(user, chat, **content)})

    def non_text(self, user: int, kind: str) -> int:
        """The citizen sends a sticker, photo, voice, document or location."""
        file = {"file_id": f"file-{kind}-{user}", "file_unique_id": f"u-{kind}-{user}"}
        content = {
            "sticker": {"sticker": {**file, "type": "regular", "width": 512, "height": 512, "is_animated": False,
                                    "is_video": False}},
            "photo": {"photo": [{**file, "width": 90, "height": 90}]},
            "voice": {"voice": {**file, "duration": 3}},
            "document": {"document": {**file, "file_name": "giay-to.pdf"}},
            "location": {"location": {"latitude": 21.0285, "longitude": 105.8542}},
        }[kind]
        return self.push({"message": self.message(user, **content)})

    def edit(self, user: int, message_id: int, text: str) -> int:
        """The citizen edits one of their messages."""
        message = {**self.message(user, text=text), "message_id": message_id, "edit_date": int(time.time())}
        return self.push({"edited_message": message})

    def click(self, user: int, sent: Sent, data: str) -> int:
        """The citizen presses the inline button with callback data `data` under a bot message."""
        query_id = str(next(self._query_ids) + 4_000_000)
        self._open_queries.add(query_id)
        return self.push({"callback_query": {"id": query_id, "from": self.user(user),
                                             "chat_instance": f"ci{sent.chat_id}", "data": data,
                                             "message": self._message_json(sent)}})

    async def deliver(self, url: str, update: dict, secret: str | None) -> int:
        """Post an update to a webhook as Telegram does (with the secret header when given); the HTTP status."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with ClientSession() as session, session.post(url, json=update, headers=headers) as response:
            return response.status

    # --- faults and inspection --------------------------------------------------------------------------------
    def fail(self, method: str, status: int, *, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` calls of `method` fail with `status` (429: with retry_after seconds; or 5xx)."""
        self._faults.setdefault(method.lower(), []).append(Fault(status, times, retry_after))

    def hang_after_delivery(self, method: str, *, times: int = 1) -> None:
        """The next `times` calls of `method` are served (a message is delivered), then their answer never comes."""
        self._hangs[method.lower()] = self._hangs.get(method.lower(), 0) + times

    def messages(self, chat_id: int) -> list[Sent]:
        """Messages the bot sent to one chat, in order."""
        return [s for s in self.sent if s.chat_id == chat_id]

    def calls_of(self, method: str) -> list[Call]:
        """Requests of one method, in order."""
        return [c for c in self.calls if c.method == method.lower()]

    async def wait_until(self, condition, timeout: float = 30.0) -> None:
        """Wait until condition() is true (checked after every request); raise TimeoutError when it stays false."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    async def wait_for_messages(self, chat_id: int, count: int = 1, after: int = 0, timeout: float = 30.0) -> list[Sent]:
        """Wait for `count` new messages to `chat_id` beyond the first `after`; return the new ones."""
        await self.wait_until(lambda: len(self.messages(chat_id)) >= after + count, timeout)
        return self.messages(chat_id)[after:]
