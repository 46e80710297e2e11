"""Bad input and secrets on the Telegram channel: the nasty corpus through the real python-telegram-bot stack
against the fake Bot API, and a full webhook run whose logs must hold no secret and no raw personal data."""

from __future__ import annotations

import asyncio
import os
import re
import sys

from bot.channels.telegram import TelegramChannel
from bot.config import ROOT
from bot.service.desk import Desk
from tests.fake_telegram import FakeTelegram
from tests.test_nasty import CORPUS, VIETNAMESE
from tests.test_telegram_channel import Polling, free_port, loop, run  # noqa: F401  (loop is a fixture)

HREF = re.compile(r"<a\s+href=\"([^\"]*)\"")


def test_the_nasty_corpus_over_telegram_gets_valid_safe_replies(loop, shipped):  # noqa: F811
    channel = TelegramChannel(Desk(shipped, rate_count=0), shipped.cfg, retry_delay=0.05, typing_after=0.0)
    sendable = [(i, text) for i, (_, text) in enumerate(CORPUS) if text.strip()]  # Telegram sends no empty text

    async def scenario():
        harness = await Polling(channel).start()
        try:
            for i, text in sendable:
                harness.fake.text(50_000 + i, text)
            await harness.fake.wait_until(
                lambda: all(harness.fake.messages(50_000 + i) for i, _ in sendable), timeout=300)
            await asyncio.sleep(0.5)  # late parts of split answers
            return {i: harness.fake.messages(50_000 + i) for i, _ in sendable}, list(harness.fake.problems)
        finally:
            await harness.stop()

    replies, problems = run(loop, scenario(), timeout=400)
    assert problems == []  # every reply was valid Telegram HTML, within limits, with valid buttons
    for i, text in sendable:
        sent = replies[i]
        assert sent and VIETNAMESE.search(sent[0].text), (text[:80], sent[0].text[:200] if sent else None)
        for message in sent:
            assert all(url.startswith("https://") for url in HREF.findall(message.html)), message.html[:300]
            assert all(b.get("url", "https://").startswith("https://") for b in message.buttons)
            for tag in ("<script", "<img", "<svg", "<iframe", "<tg-spoiler"):
                assert tag not in message.html.lower()
    print(f"\n{len(sendable)} nasty messages over Telegram, {sum(len(s) for s in replies.values())} replies")


SECRETS = {
    "TELEGRAM_WEBHOOK_SECRET": "wh-secret-Zq8tK3vV9pLx2mN7",
    "LOG_HASH_KEY": "log-hash-key-Jd83kQ0zR5",
    "ZALO_OA_SECRET_KEY": "zalo-oa-secret-Bn4Xc7Ut",
    "ZALO_APP_SECRET": "zalo-app-secret-Kw2Ye9Hs",
    "ZALO_ACCESS_TOKEN": "zalo-access-token-Pm5Rf1Lq",
    "ZALO_REFRESH_TOKEN": "zalo-refresh-token-Gt6Vb3Nc",
}
PERSONAL = ("012345678901", "0912345678", "nguyen.van.a@example.com")


def test_a_full_webhook_run_logs_no_secret_and_no_personal_data(loop, shipped, tmp_path):  # noqa: F811
    """`python -m bot telegram --webhook` with every secret set: forged and real updates, personal data in
    questions, a 5xx and a 429 from the Bot API, then SIGTERM. No secret and no raw personal datum is in its output,
    its question log or any file it wrote."""
    port = free_port()

    async def scenario():
        fake = await FakeTelegram().start()
        env = {**os.environ, **SECRETS, "CCHC_CONFIG": str(shipped.cfg.base / "config.toml"),
               "CCHC_MODEL_THREADS": "1", "HF_HUB_OFFLINE": "1", "TELEGRAM_BOT_TOKEN": fake.token,
               "CCHC_TELEGRAM_BASE_URL": fake.base_url, "CCHC_TELEGRAM_LISTEN": "127.0.0.1",
               "CCHC_TELEGRAM_PORT": str(port), "CCHC_TELEGRAM_WEBHOOK_URL": "https://bot.example.gov.vn/telegram"}
        out_path = tmp_path / "telegram.log"
        url = f"http://127.0.0.1:{port}/telegram"
        secret = SECRETS["TELEGRAM_WEBHOOK_SECRET"]
        with out_path.open("wb") as out:
            process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "telegram", "--webhook",
                                                           cwd=ROOT, env=env, stdout=out, stderr=out)
            try:
                await fake.wait_until(lambda: bool(fake.webhook), timeout=120)
                statuses = []
                for _ in range(100):  # the server listens right after setWebhook
                    try:
                        statuses.append(await fake.deliver(url, {"update_id": 1, "message": fake.message(
                            4001, text="lệ phí cấp hộ chiếu")}, "forged-" + secret))
                        break
                    except OSError:
                        await asyncio.sleep(0.1)
                statuses.append(await fake.deliver(url, {"update_id": 2, "message": fake.message(
                    4001, text="lệ phí cấp hộ chiếu")}, None))
                fake.fail("sendMessage", 503)  # not taken: sent again (a 500 may hide a delivery: never resent)
                fake.fail("sendMessage", 429, retry_after=1)
                questions = [f"CCCD của tôi là {PERSONAL[0]}, sđt {PERSONAL[1]}, email {PERSONAL[2]}, làm hộ chiếu ở đâu",
                             "lệ phí cấp hộ chiếu", "/stats", "<script>alert(1)</script>"]
                for n, text in enumerate(questions, 3):
                    statuses.append(await fake.deliver(url, {"update_id": n, "message": fake.message(4002 + n, text=text)},
                                                       secret))
                await fake.wait_until(lambda: all(fake.messages(4002 + n) for n in range(3, 3 + len(questions))),
                                      timeout=120)
                process.terminate()
                await asyncio.wait_for(process.wait(), 60)
            finally:
                if process.returncode is None:
                    process.kill()
                await fake.close()
        return process.returncode, statuses, out_path.read_bytes(), fake.messages(4001), list(fake.problems)

    code, statuses, output, forged_replies, problems = run(loop, scenario(), timeout=300)
    text = output.decode("utf-8", "replace")
    assert code == 0, text[-2000:]
    assert statuses[:2] == [403, 403] and set(statuses[2:]) == {200}
    assert forged_replies == []  # a forged or missing secret reaches nobody
    token_secret = FakeTelegram().token.split(":", 1)[1]
    leaks = [name for name, value in {**SECRETS, "TELEGRAM_BOT_TOKEN": token_secret}.items() if value in text]
    assert leaks == [], text[-3000:]
    assert [p for p in PERSONAL if p in text] == [], text[-3000:]
    written = [p for p in shipped.cfg.data_dir.rglob("*") if p.is_file() and "models" not in p.parts]
    for path in written:
        raw = path.read_bytes()
        for name, value in {**SECRETS, "TELEGRAM_BOT_TOKEN": token_secret}.items():
            assert value.encode() not in raw, f"{name} written to {path}"
        for datum in PERSONAL:
            assert datum.encode() not in raw, f"personal data written to {path}"
    assert problems == []
