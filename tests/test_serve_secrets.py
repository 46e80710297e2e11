"""A full `python -m bot serve` run with every Zalo secret set: forged, replayed and real webhook events, personal
data in questions, an expired access token (refreshed and stored), transport faults from the OA API, the JSON API,
then SIGTERM. No secret, no refreshed token and no raw personal datum is in its output or any file it wrote except
the private token file."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time

import aiohttp
from fake_zalo import FakeZalo

from bot.config import ROOT
from tests.test_telegram_channel import free_port

SECRETS = {
    "ZALO_OA_SECRET_KEY": "zalo-oa-secret-Qf7Lp2Wd9Xs",
    "ZALO_APP_SECRET": "zalo-app-secret-Hy4Tn8Rb1Kc",
    "ZALO_ACCESS_TOKEN": "zalo-access-token-Vm3Ej6Ua0Zo",
    "ZALO_REFRESH_TOKEN": "zalo-refresh-token-Bg5Ci9Ow2Nl",
    "LOG_HASH_KEY": "log-hash-key-Pr1Sd4Yx7Jm",
}
PERSONAL = ("079301234567", "0987654321", "tran.thi.b@example.com")


def test_a_full_serve_run_logs_no_secret_and_no_personal_data(shipped, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    async def scenario():
        async with FakeZalo(oa_secret_key=SECRETS["ZALO_OA_SECRET_KEY"], app_secret=SECRETS["ZALO_APP_SECRET"],
                            access_token=SECRETS["ZALO_ACCESS_TOKEN"],
                            refresh_token=SECRETS["ZALO_REFRESH_TOKEN"]) as zalo:
            env = {**os.environ, **zalo.env(), "LOG_HASH_KEY": SECRETS["LOG_HASH_KEY"],
                   "CCHC_CONFIG": str(shipped.cfg.base / "config.toml"), "CCHC_MODEL_THREADS": "1",
                   "HF_HUB_OFFLINE": "1", "CCHC_WEB_LISTEN": "127.0.0.1", "CCHC_WEB_PORT": str(port),
                   "CCHC_ZALO_TIMEOUT": "2"}
            out_path = tmp_path / "serve.log"
            hook = f"{base}/zalo/webhook"
            with out_path.open("wb") as out:
                process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", cwd=ROOT,
                                                               env=env, stdout=out, stderr=out)
                try:
                    async with aiohttp.ClientSession() as http:
                        for _ in range(1200):  # the model loads first
                            try:
                                async with http.get(f"{base}/healthz") as r:
                                    if r.status == 200:
                                        break
                            except aiohttp.ClientConnectionError:
                                await asyncio.sleep(0.1)
                        statuses = [
                            (await zalo.deliver(hook, zalo.text_event("forger", "xin chào"), signature="mac=" + "0" * 64))[0],
                            (await zalo.deliver(hook, zalo.text_event("forger", "xin chào"), signature=""))[0],
                            (await zalo.deliver(hook, zalo.text_event(
                                "forger", "xin chào", timestamp=str(int(time.time() * 1000) - 7_200_000))))[0],
                        ]
                        first = zalo.text_event("citizen-1", f"CCCD của tôi là {PERSONAL[0]}, sđt {PERSONAL[1]}, "
                                                             f"email {PERSONAL[2]}, làm hộ chiếu ở đâu")
                        statuses.append((await zalo.deliver(hook, first))[0])
                        statuses.append((await zalo.deliver(hook, first))[0])  # Zalo's redelivery: answered once
                        await zalo.wait_sent(1)
                        zalo.expire_token()
                        statuses.append((await zalo.deliver(hook, zalo.text_event("citizen-2", "lệ phí khai sinh")))[0])
                        zalo.break_next("503")
                        zalo.break_next("429")  # both say Zalo did not take the message: it is sent again
                        statuses.append((await zalo.deliver(hook, zalo.text_event("citizen-3", "đăng ký kết hôn")))[0])
                        async with http.post(f"{base}/api/ask", json={
                                "question": f"tôi tên Trần Thị B, sđt {PERSONAL[1]}, lệ phí hộ chiếu", "user": "w1"}) as r:
                            statuses.append(r.status)
                        async with zalo._changed:
                            await asyncio.wait_for(zalo._changed.wait_for(
                                lambda: {s.user_id for s in zalo.sent} >= {"citizen-1", "citizen-2", "citizen-3"}), 120)
                    process.terminate()
                    await asyncio.wait_for(process.wait(), 60)
                finally:
                    if process.returncode is None:
                        process.kill()
            refreshed = (zalo.access_token, zalo.refresh_token)
            return process.returncode, statuses, out_path.read_bytes(), list(zalo.sent), zalo.refreshes, refreshed

    code, statuses, output, sent, refreshes, refreshed = asyncio.run(scenario())
    text = output.decode("utf-8", "replace")
    assert code == 0, text[-2000:]
    # forged, unsigned: 401; genuine but an hour old: 200, logged for staff and not answered
    assert statuses == [401, 401, 200, 200, 200, 200, 200, 200], text[-2000:]
    assert "forger" not in {s.user_id for s in sent}
    assert refreshes == 1
    assert "Zalo OA API answered HTTP 503" in text  # the run did log, and the faults were met
    values = {**SECRETS, "refreshed access token": refreshed[0], "refreshed refresh token": refreshed[1]}
    assert [name for name, value in values.items() if value in text] == [], text[-3000:]
    assert [p for p in PERSONAL if p in text] == [], text[-3000:]
    tokens = shipped.cfg.data_dir / "zalo-tokens.json"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    for path in shipped.cfg.data_dir.rglob("*"):
        if not path.is_file() or "models" in path.parts or path == tokens:
            continue
        raw = path.read_bytes()
        for name, value in values.items():
            assert value.encode() not in raw, f"{name} written to {path}"
        for datum in PERSONAL:
            assert datum.encode() not in raw, f"personal data written to {path}"
