"""The Telegram channel: python-telegram-bot in polling or webhook mode, sending the desk's replies as HTML.

The HTML comes from `bot.channels.render` (`telegram_html`, cut by `split_html`); `TelegramChannel` wires the desk
into a python-telegram-bot `Application` (handlers, buttons, feedback, admin commands, error handler, flood
control). `relay` carries handoff tickets to the staff group and staff replies back. Like every channel, it imports
the engine, the service, `render` and the channel registry, never another channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import sys
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from urllib.parse import urlparse

import httpx
from aiohttp import web
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message, ReplyParameters, Update
from telegram.constants import ChatAction, ChatType, MessageEntityType, ParseMode
from telegram.error import BadRequest, NetworkError, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from bot.channels import ChannelInfo
from bot.channels.render import escape, short, split_html, telegram_html
from bot.config import Config
from bot.engine.phrases import DEFAULT_HOTLINE, NON_TEXT, apology, error_id
from bot.service.desk import Desk, Reply
from bot.service.handoff import BUTTON as HANDOFF_BUTTON
from bot.service.inbox import Inbox
from bot.service.store import StoreError

from .limits import FairRateLimiter

log = logging.getLogger("bot.telegram")

ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
CALLBACK_LIMIT = 64  # bytes of callback data
EXAMPLES = ("Làm thẻ căn cước cần giấy tờ gì?", "Đăng ký khai sinh ở đâu?", "Lệ phí đăng ký kết hôn bao nhiêu?",
            "dang ky thuong tru online the nao")
WELCOME = ("Xin chào! Tôi là <b>Trợ lý cải cách hành chính</b>. Bạn hỏi tôi về thủ tục hành chính (khai sinh, "
           "kết hôn, thường trú, thẻ căn cước, lý lịch tư pháp…) hoặc về cải cách hành chính; tôi trả lời kèm "
           "nguồn, ngày cập nhật và đường dẫn nộp hồ sơ trực tuyến.")
HELP = ("Bạn cứ gõ câu hỏi bằng tiếng Việt, có dấu hay không dấu đều được. Ví dụ:\n{examples}\n\n"
        "Sau mỗi câu trả lời, bạn bấm các nút <b>Hồ sơ</b>, <b>Lệ phí</b>, <b>Thời hạn</b>… để hỏi tiếp về "
        "thủ tục đó, hoặc gõ “còn lệ phí thì sao?”. Bấm 👍 / 👎 để cho chúng tôi biết câu trả lời có giúp được "
        "bạn không.\n\nLệnh: /help — hướng dẫn, /lienhe — đường dây nóng và cổng dịch vụ công.\n"
        "Trong nhóm, hãy nhắc đến tôi (@{username}) hoặc trả lời tin nhắn của tôi.")
CAPTION_NOTE = "Tôi chỉ đọc được chữ nên trả lời theo phần chú thích của bạn."
EDITED_NOTE = "Bạn vừa sửa tin nhắn; đây là câu trả lời theo nội dung mới."
OLD_BUTTON = "Nút này đã cũ. Bạn vui lòng gõ lại câu hỏi nhé."
THANKS_FEEDBACK = "Cảm ơn bạn đã góp ý!"
NOT_YOURS = "Chỉ người đã hỏi mới đánh giá được câu trả lời này."


class NotSent(NetworkError):
    """Telegram did not take the request: no connection was made, or it answered 503. Sending again is safe."""


class TelegramRequest(HTTPXRequest):
    """python-telegram-bot's HTTP client, telling apart the failures that prove a request was not taken (`NotSent`)
    from those that may hide a delivered message (a timeout, a connection lost after sending, another 5xx), which
    must never be sent again: the citizen would get the answer twice."""

    async def do_request(self, *args, **kwargs):
        """Send one request; `NotSent` when it provably never reached Telegram or Telegram refused to take it."""
        try:
            code, payload = await super().do_request(*args, **kwargs)
        except NetworkError as e:
            if isinstance(e.__cause__, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
                raise NotSent(f"not sent: {e.__cause__.__class__.__name__}: {e.__cause__}") from e
            raise
        if code == 503:  # Service Unavailable: the server says it did not handle the request
            raise NotSent("not sent: Telegram answered 503 Service Unavailable")
        return code, payload


# --- the channel ------------------------------------------------------------------------------------------------

class TelegramChannel:
    """Serves one desk on Telegram."""

    def __init__(self, desk: Desk, cfg: Config, *, send_retries: int = 3, retry_delay: float = 1.0,
                 typing_after: float = 1.0, timeout: float = 5.0):
        self.desk = desk
        self.cfg = cfg
        self.settings = cfg.telegram
        self.admins = {a.strip() for a in self.settings.admins}
        self.send_retries, self.retry_delay, self.typing_after = send_retries, retry_delay, typing_after
        self.timeout = timeout  # seconds to wait for Telegram's answer to one request
        self._questions: OrderedDict[str, str] = OrderedDict()  # callback token → question, for long questions
        self.started = time.time()
        self.kinds: Counter[str] = Counter()
        self.chats: set[int] = set()
        self.latencies: deque[float] = deque(maxlen=2000)
        self.errors = 0
        self._typing: dict[int, float] = {}  # chat → when "typing…" was last sent

    # --- building ---
    def build(self, token: str, base_url: str | None = None, updater: bool = True) -> Application:
        """The python-telegram-bot application: flood control (Telegram's limits at their cap, fair between chats;
        `limits.FairRateLimiter`), handlers. Without `updater` it fetches no updates itself: the web server hands
        them over (`mount`)."""
        # Durations as datetime.timedelta (the python-telegram-bot 22.2+ opt-in; read when a RetryAfter is made):
        # without it every 429 warns that the int form is deprecated. Nothing here reads those durations.
        os.environ.setdefault("PTB_TIMEDELTA", "1")
        request = TelegramRequest(connection_pool_size=256, read_timeout=self.timeout, write_timeout=self.timeout)
        builder = (Application.builder().token(token).base_url(base_url or self.settings.base_url).request(request)
                   .rate_limiter(FairRateLimiter()).concurrent_updates(32))
        if not updater:
            builder = builder.updater(None)
        app = builder.build()
        app.add_handler(CommandHandler("start", self.on_start))
        app.add_handler(CommandHandler("help", self.on_help))
        app.add_handler(CommandHandler("lienhe", self.on_contact))
        app.add_handler(CommandHandler("stats", self.on_stats))
        app.add_handler(CommandHandler("reload", self.on_reload))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGES & filters.TEXT, self.on_text))
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGES & ~filters.TEXT & ~filters.StatusUpdate.ALL,
                                       self.on_non_text))
        app.add_error_handler(self.on_error)
        if self.desk.handoff is not None and self.settings.staff_chat:  # handoff: tickets to staff, replies back
            from .relay import StaffRelay

            StaffRelay(self.desk.handoff, self.settings.staff_chat).install(app)
        return app

    # --- keyboard ---
    def button_data(self, question: str) -> str:
        """Callback data asking `question`: the question itself when it fits 64 bytes, else a remembered token."""
        data = f"q:{question}"
        if len(data.encode()) <= CALLBACK_LIMIT:
            return data
        token = hashlib.sha1(question.encode()).hexdigest()[:16]
        self._questions[token] = question
        self._questions.move_to_end(token)
        while len(self._questions) > 20_000:
            self._questions.popitem(last=False)
        state = getattr(self.desk, "state", None)
        if state is not None:  # several workers: the click may reach another one
            try:
                state.remember_question(token, question)
            except StoreError as e:
                log.warning("callback token kept in this worker only (%s)", e)
        return f"t:{token}"

    async def question_for(self, token: str) -> str | None:
        """The question a long button's token stands for: remembered here, or by another worker in the store."""
        question = self._questions.get(token)
        state = getattr(self.desk, "state", None)
        if question is None and state is not None:
            try:
                question = await asyncio.to_thread(state.question_for, token)
            except StoreError as e:
                log.warning("callback token not found (%s)", e)
        return question

    def keyboard(self, reply: Reply, asker: int | None = None) -> InlineKeyboardMarkup | None:
        """Follow-up, closest-entry, online-service and feedback buttons (for the user `asker`) for a reply."""
        if reply.limited:
            return None
        answer = reply.answer
        rows: list[list[InlineKeyboardButton]] = []
        rows += [[InlineKeyboardButton(short(s), callback_data=self.button_data(s))] for s in answer.suggestions]
        follow = [InlineKeyboardButton(short(label), callback_data=self.button_data(q)) for label, q in reply.follow_ups]
        per_row = 1 if answer.kind == "clarify" else 3  # a sibling's name needs the whole width
        rows += [follow[i:i + per_row] for i in range(0, len(follow), per_row)]
        if answer.kind in ("answer", "decline"):
            rows += [[InlineKeyboardButton(short(f"🌐 {x.title}"), url=x.url)]
                     for x in answer.links[:3] if x.url.startswith(("http://", "https://"))]
        if reply.question_id is not None and asker is not None:  # only the asker's click counts (on_button)
            rows.append([InlineKeyboardButton("👍 Hữu ích", callback_data=f"fb:{reply.question_id}:1:{asker}"),
                         InlineKeyboardButton("👎 Chưa đúng", callback_data=f"fb:{reply.question_id}:-1:{asker}")])
        return InlineKeyboardMarkup(rows) if rows else None

    # --- sending ---
    async def send(self, bot, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None,
                   reply_to: int | None = None) -> list[Message]:
        """Send HTML split under 4,096 characters (buttons under the last part). A part Telegram provably did not
        take is sent again; a part that may have been delivered (a timeout, a lost connection, a 5xx other than 503)
        is logged and never sent again, and the next parts still go."""
        parts = split_html(text)
        sent = []
        for i, part in enumerate(parts):
            kwargs = {"parse_mode": ParseMode.HTML, "link_preview_options": LinkPreviewOptions(is_disabled=True),
                      "reply_markup": markup if i == len(parts) - 1 else None,
                      "reply_parameters": ReplyParameters(reply_to, allow_sending_without_reply=True)
                      if reply_to and i == 0 else None}
            try:
                sent.append(await self._retry(lambda part=part, kwargs=kwargs: bot.send_message(chat_id, part,
                                                                                               **kwargs)))
            except (NotSent, BadRequest):  # not delivered: the caller apologises
                raise
            except NetworkError as e:
                log.warning("message %d of %d to chat %s may not have been delivered (%s); not sent again", i + 1,
                            len(parts), chat_id, e)
        return sent

    async def _retry(self, call):
        """Failures that prove Telegram did not take the request (`NotSent`) are tried again; 429 is handled by the
        rate limiter; anything else is raised at once."""
        for attempt in range(self.send_retries + 1):
            try:
                return await call()
            except NotSent as e:
                if attempt == self.send_retries:
                    raise
                log.warning("Telegram did not take the request (%s); sending again", e)
                await asyncio.sleep(self.retry_delay * 2 ** attempt)

    async def _typing_later(self, bot, chat_id: int) -> None:
        """"typing…" when an answer is slow (a queue); Telegram shows it for 5 s, so once per 4 s per chat."""
        await asyncio.sleep(self.typing_after)
        now = time.monotonic()
        if now - self._typing.get(chat_id, -10.0) < 4.0:
            return
        self._typing[chat_id] = now
        if len(self._typing) > 10_000:
            self._typing = {c: t for c, t in self._typing.items() if now - t < 4.0}
        with contextlib.suppress(TelegramError):
            await bot.send_chat_action(chat_id, ChatAction.TYPING)

    async def answer(self, update: Update, context: ContextTypes.DEFAULT_TYPE, text: str,
                     notes: tuple[str, ...] = ()) -> None:
        """Ask the desk in this chat's conversation and send the reply with its buttons."""
        chat = update.effective_chat
        assert chat is not None
        if len(self.chats) < 1_000_000:  # for /stats; bounded
            self.chats.add(chat.id)
        typing = asyncio.create_task(self._typing_later(context.bot, chat.id))
        started = time.perf_counter()
        try:
            reply = await self.desk.aask("telegram", str(chat.id), text)
        finally:
            typing.cancel()
        self.latencies.append(time.perf_counter() - started)
        self.kinds[reply.answer.kind] += 1
        reply.notes[:0] = list(notes)
        message = update.effective_message if update.callback_query is None else None
        reply_to = message.message_id if message is not None and chat.type != ChatType.PRIVATE else None
        asker = update.effective_user.id if update.effective_user is not None else None
        await self.send(context.bot, chat.id, telegram_html(reply), self.keyboard(reply, asker), reply_to)

    # --- handlers ---
    def _addressed(self, message: Message, bot_id: int, username: str) -> str | None:
        """The text meant for the bot; in groups only when it is mentioned or replied to (mention removed)."""
        text = message.text or message.caption or ""
        if message.chat.type == ChatType.PRIVATE:
            return text
        replied = message.reply_to_message is not None and message.reply_to_message.from_user is not None \
            and message.reply_to_message.from_user.id == bot_id
        mention = f"@{username}".lower()
        entities = message.parse_entities() if message.text else message.parse_caption_entities()
        mentioned = any(e.type == MessageEntityType.MENTION and value.lower() == mention
                        or e.type == MessageEntityType.TEXT_MENTION and e.user is not None and e.user.id == bot_id
                        for e, value in entities.items())
        if not (replied or mentioned):
            return None
        return re.sub(re.escape(f"@{username}"), " ", text, flags=re.IGNORECASE).strip()

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A question (also an edited one, and an unknown command: the desk answers it like any text)."""
        message = update.effective_message
        if message is None:
            return
        text = self._addressed(message, context.bot.id, context.bot.username)
        if text is None:
            return
        notes = (EDITED_NOTE,) if update.edited_message is not None else ()
        await self.answer(update, context, text, notes)

    async def on_non_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Stickers, photos, voice, files, locations: a short note (a caption, if any, is answered)."""
        message = update.effective_message
        if message is None or self._addressed(message, context.bot.id, context.bot.username) is None:
            return
        if message.caption and message.caption.strip():
            await self.answer(update, context, self._addressed(message, context.bot.id, context.bot.username) or "",
                              (CAPTION_NOTE,))
            return
        await self.send(context.bot, message.chat_id, escape(NON_TEXT))

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/start: who the bot is, with examples."""
        await self.on_help(update, context, first=WELCOME + "\n\n")

    async def on_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE, first: str = "") -> None:
        """/help: how to ask, with example questions as buttons."""
        message = update.effective_message
        if message is None:
            return
        examples = "\n".join(f"• {escape(x)}" for x in EXAMPLES)
        markup = InlineKeyboardMarkup([[InlineKeyboardButton(x, callback_data=self.button_data(x))]
                                       for x in EXAMPLES[:3]])
        await self.send(context.bot, message.chat_id,
                        first + HELP.format(examples=examples, username=escape(context.bot.username)), markup)

    async def on_contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/lienhe: the official hotline and portals."""
        message = update.effective_message
        if message is None:
            return
        hotline = self.desk.assistant.hotline
        data = self.desk.assistant.data
        links = [x for x in (data.links if data is not None else []) if x.get("default")]
        text = (f"<b>Đường dây nóng:</b> {escape(hotline['name'])} — {escape(str(hotline['number']))}\n"
                f"<b>Cổng dịch vụ công:</b> {escape(hotline.get('url') or DEFAULT_HOTLINE['url'])}")
        buttons = [[InlineKeyboardButton(short(f"🌐 {x['title']}"), url=x["url"])] for x in links
                   if str(x.get("url", "")).startswith(("http://", "https://"))]
        await self.send(context.bot, message.chat_id, text, InlineKeyboardMarkup(buttons) if buttons else None)

    def _is_admin(self, update: Update) -> bool:
        return update.effective_user is not None and str(update.effective_user.id) in self.admins

    async def on_stats(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/stats for admins: questions by kind, chats, latency, index; anyone else gets the ordinary answer."""
        if not self._is_admin(update):
            await self.on_text(update, context)
            return
        data = self.desk.assistant.data
        latencies = sorted(self.latencies)
        p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0
        hours = (time.time() - self.started) / 3600
        kinds = ", ".join(f"{k} {n}" for k, n in self.kinds.most_common()) or "chưa có"
        text = (f"<b>Thống kê từ khi khởi động</b> ({hours:.1f} giờ)\n"
                f"Câu hỏi: {sum(self.kinds.values())} ({escape(kinds)})\n"
                f"Cuộc trò chuyện: {len(self.chats)}\n"
                f"Thời gian trả lời p95: {p95 * 1000:.0f} ms\n"
                f"Lỗi: {self.errors}\n"
                f"Chỉ mục: {escape(data.version if data else 'chưa nạp')}, {len(data.entries) if data else 0} mục")
        await self.send(context.bot, update.effective_chat.id if update.effective_chat else 0, text)

    async def on_reload(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/reload for admins: switch to a rebuilt index now; anyone else gets the ordinary answer."""
        if not self._is_admin(update):
            await self.on_text(update, context)
            return
        before = self.desk.assistant.data.version if self.desk.assistant.data else None
        try:
            await self.desk.acall(self.desk.assistant.refresh)
        except Exception as e:  # a broken index: keep serving the old one, tell the admin why
            log.exception("reload failed")
            text = f"Không nạp được chỉ mục mới: {escape(str(e))}. Bot vẫn dùng chỉ mục cũ."
        else:
            data = self.desk.assistant.data
            after = data.version if data else None
            count = len(data.entries) if data else 0
            text = (f"Đã nạp chỉ mục mới {escape(str(after))} ({count} mục), thay cho {escape(str(before))}."
                    if after != before else f"Chỉ mục {escape(str(after))} ({count} mục) đã là bản mới nhất.")
        await self.send(context.bot, update.effective_chat.id if update.effective_chat else 0, text)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Inline buttons: feedback (answered at once, buttons removed) or a question asked in this chat."""
        query = update.callback_query
        if query is None:
            return
        data = query.data or ""
        if data.startswith("fb:"):
            _, qid, value, asker = (data.split(":") + ["", "", ""])[:4]
            ok = qid.isdigit() and value in ("1", "-1") and asker.isdigit()
            if ok and (query.from_user is None or str(query.from_user.id) != asker):
                await query.answer(NOT_YOURS)  # someone else in a group: their click is not recorded
                return
            await query.answer(THANKS_FEEDBACK if ok else OLD_BUTTON)
            chat = update.effective_chat
            if not ok or chat is None:
                return
            await self.desk.afeedback(int(qid), int(value), channel="telegram", user=str(chat.id))
            message = query.message
            if isinstance(message, Message) and message.reply_markup is not None:
                rows = [list(row) for row in message.reply_markup.inline_keyboard
                        if not any(str(b.callback_data or "").startswith("fb:") for b in row)]
                if value == "-1" and self.desk.handoff is not None:  # not helped: offer a person
                    label, handoff = HANDOFF_BUTTON
                    data = self.button_data(handoff)
                    if not any(b.callback_data == data for row in rows for b in row):
                        rows.append([InlineKeyboardButton(label, callback_data=data)])
                with contextlib.suppress(BadRequest):  # "message is not modified": a double click
                    await self._retry(lambda: query.edit_message_reply_markup(InlineKeyboardMarkup(rows) if rows
                                                                              else None))
            return
        question = data[2:] if data.startswith("q:") else await self.question_for(data[2:]) if data.startswith("t:") \
            else None
        if not question:
            await query.answer(OLD_BUTTON)
            return
        await query.answer()
        await self.answer(update, context, question)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log the error with an id; the citizen gets an apology with the hotline and that id."""
        error = error_id()
        self.errors += 1
        log.error("error %s handling update %s", error,
                  update.update_id if isinstance(update, Update) else None, exc_info=context.error)
        if not isinstance(update, Update) or update.effective_chat is None:
            return
        text = escape(apology(self.desk.assistant.hotline, error))
        try:
            await self.send(context.bot, update.effective_chat.id, text)
        except TelegramError:
            log.exception("could not send the apology for error %s", error)


# --- running ----------------------------------------------------------------------------------------------------

# --- the webhook on `python -m bot serve`'s port ------------------------------------------------------------------

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TELEGRAM = web.AppKey("telegram", Application)  # the application, started with the server
TELEGRAM_INBOX = web.AppKey("telegram_inbox", Inbox)  # update ids taken (shared by every worker over PostgreSQL)
NOT_CONFIGURED = "Kênh Telegram chưa được cấu hình đủ để nhận webhook ({problems})."


def webhook_problems(url: str, secret: str, token: str | None = None) -> list[str]:
    """What keeps webhook mode from starting, in Vietnamese (empty when nothing does)."""
    problems = []
    if token is not None and not token:
        problems.append("đặt biến môi trường TELEGRAM_BOT_TOKEN (token BotFather cấp)")
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", secret):
        problems.append("đặt TELEGRAM_WEBHOOK_SECRET: 16–256 ký tự A-Z, a-z, 0-9, _ hoặc -")
    if not str(url).startswith("https://"):
        problems.append("đặt [telegram] webhook_url: địa chỉ HTTPS công khai, ví dụ https://bot.example.gov.vn/telegram")
    return problems


async def register_webhook(application: Application, url: str, secret: str, attempts: int = 5,
                           delay: float = 2.0) -> bool:
    """Tell Telegram where to post updates (every worker does: the same URL, so the calls agree); a failure is
    logged and tried again, and Telegram keeps posting to the webhook set before meanwhile."""
    for attempt in range(attempts):
        try:
            await application.bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
            return True
        except TelegramError as e:
            log.warning("setWebhook failed (%s)%s", e, "; trying again" if attempt + 1 < attempts else "")
            await asyncio.sleep(delay * 2 ** attempt)
    return False


STALE_TAKE = 120.0  # seconds: an update taken this long ago and still not answered was lost with its worker


def take_update(inbox: Inbox, update_id: int) -> str:
    """What this worker is to do with an update: "answer" it (the first to take its id, or a retry of one taken
    more than `STALE_TAKE` seconds ago and never answered: its worker was killed; taken over once), nothing more
    when it was "answered" before, or wait while it is being answered "elsewhere"."""
    now = inbox.clock()
    if inbox.take("telegram", f"update:{update_id}", "", now):
        return "answer"
    if inbox.status("telegram", f"done:{update_id}"):
        return "answered"
    taken = inbox.taken_at("telegram", f"update:{update_id}")
    if taken is not None and now - taken >= STALE_TAKE and inbox.take("telegram", f"retake:{update_id}", "", now):
        return "answer"
    return "elsewhere"


def mount(app: web.Application, cfg: Config, desk: Desk, env: Mapping[str, str] | None = None) -> None:
    """With `[telegram] on_serve`, Telegram's webhook at the path of `[telegram] webhook_url` on the web server, in
    every worker. An update is answered before its 200, so one Telegram did not get a 200 for is posted again; the
    inbox takes each update id once (`take_update`): a retry of an answered update gets 200, one still being
    answered elsewhere 503 (posted again later), one whose worker died is taken over. Without the
    token, the secret or an HTTPS webhook_url, the path answers 503 and the log says what is missing."""
    settings = cfg.telegram
    if not settings.on_serve:
        return
    env = os.environ if env is None else env
    token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    secret = env.get("TELEGRAM_WEBHOOK_SECRET", "").strip()
    url = settings.webhook_url
    path = "/" + (urlparse(url).path.strip("/") or "telegram")
    problems = webhook_problems(url, secret, token)
    if problems:
        message = NOT_CONFIGURED.format(problems="; ".join(problems))
        log.error("%s", message)

        async def not_configured(request: web.Request) -> web.Response:
            return web.json_response({"error": message}, status=503,
                                     dumps=lambda x: json.dumps(x, ensure_ascii=False))

        app.router.add_post(path, not_configured)
        return

    async def telegram_context(server: web.Application):
        application = TelegramChannel(desk, cfg).build(token, updater=False)
        inbox = await asyncio.to_thread(Inbox.open, cfg, env, desk.store)
        await application.initialize()
        await application.start()
        server[TELEGRAM], server[TELEGRAM_INBOX] = application, inbox
        registering = asyncio.create_task(register_webhook(application, url, secret))
        yield
        registering.cancel()
        await application.stop()  # the staff relay finishes its pass under way (post_stop)
        await application.shutdown()
        inbox.close()

    async def telegram_webhook(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.headers.get(SECRET_HEADER, "").encode(), secret.encode()):
            return web.Response(status=403)
        application, inbox = request.app[TELEGRAM], request.app[TELEGRAM_INBOX]
        try:
            data = await request.json()
            valid = isinstance(data, dict) and type(data.get("update_id")) is int
            update = Update.de_json(data, application.bot) if valid else None
        except (ValueError, TypeError, KeyError, TelegramError):
            update = None
        if update is None:
            return web.Response(status=400)
        taken = await asyncio.to_thread(take_update, inbox, update.update_id)
        if taken == "answered":  # a retry of an update answered before (here or by another worker)
            return web.Response(status=200)
        if taken == "elsewhere":  # still being answered by the worker that took it: Telegram posts it again later
            return web.Response(status=503, headers={"Retry-After": "30"})
        await application.update_processor.process_update(update, application.process_update(update))
        await asyncio.to_thread(inbox.take, "telegram", f"done:{update.update_id}", "", inbox.clock())
        return web.Response(status=200)

    app.cleanup_ctx.append(telegram_context)
    app.router.add_post(path, telegram_webhook)


CHANNEL = ChannelInfo("telegram", "Telegram", "#229ED9", share=0.5, section="telegram", mount=mount)


def run(cfg: Config, webhook: bool = False) -> int:
    """`python -m bot telegram [--webhook]`: serve until SIGINT/SIGTERM, finishing every update already taken."""
    from bot.engine.index import IndexUnavailable
    from bot.service.desk import open_desk

    token = os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        print("Lỗi: chưa có token. Đặt biến môi trường TELEGRAM_BOT_TOKEN (token BotFather cấp).", file=sys.stderr)
        return 2
    if cfg.telegram.on_serve:
        print("Lỗi: [telegram] on_serve = true: Telegram được phục vụ qua webhook của `python -m bot serve`; "
              "không chạy thêm `python -m bot telegram` (mỗi tin sẽ được hai nơi nhận).", file=sys.stderr)
        return 2
    secret = os.environ.get("TELEGRAM_WEBHOOK_SECRET", "").strip()
    url = cfg.telegram.webhook_url
    if webhook:
        problems = webhook_problems(url, secret)
        if problems:
            print("Lỗi: " + "; ".join(problems), file=sys.stderr)
            return 2
    from bot.service.store import SchemaError, StoreError

    try:
        desk = open_desk(cfg)
    except (IndexUnavailable, StoreError, SchemaError) as e:
        print(f"Lỗi: {e}", file=sys.stderr)
        return 2
    app = TelegramChannel(desk, cfg).build(token)
    previous_init = app.post_init

    async def post_init(application: Application) -> None:  # the desk's pace, measured before the first update
        if previous_init is not None:
            await previous_init(application)
        await desk.warm_up()

    app.post_init = post_init
    try:
        if webhook:
            app.run_webhook(listen=cfg.telegram.listen, port=cfg.telegram.port,
                            url_path=urlparse(url).path.strip("/") or "telegram", webhook_url=url,
                            secret_token=secret, allowed_updates=ALLOWED_UPDATES)
        else:
            app.run_polling(allowed_updates=ALLOWED_UPDATES)
    finally:
        desk.close()
    return 0
