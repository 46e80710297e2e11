"""A realistic generated question log, for tests, demos and the report screenshot (never mixed with a real log).

Answered questions are the knowledge base's own FAQ wordings; unanswered ones are variants of topics the base
lacks; channels, hours, feedback and latencies follow plausible shapes. Every value comes from a seeded random
generator, so the same seed gives the same log.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.channels import registry
from bot.engine.answer import Answer, Source
from bot.service.handoff import BUTTON, Handoff
from bot.service.qlog import QuestionLog

# Topics the shipped base does not cover, each asked in several ways (as citizens type them).
MISSING: dict[str, list[str]] = {
    "chim-yen": ["nuôi chim yến có cần xin phép không", "nuoi chim yen can giay phep gi",
                 "xây nhà nuôi yến phải đăng ký ở đâu", "làm nhà yến cần thủ tục gì",
                 "đăng ký nuôi chim yến trong khu dân cư"],
    "karaoke": ["xin giấy phép kinh doanh karaoke", "mở quán karaoke cần giấy tờ gì",
                "giay phep karaoke xin o dau", "thủ tục cấp phép kinh doanh dịch vụ karaoke"],
    "phao-hoa": ["xin phép bắn pháo hoa đám cưới", "bắn pháo hoa tết có phải xin phép không",
                 "ban phao hoa can giay phep gi", "thủ tục đăng ký bắn pháo hoa cho công ty"],
    "cho-meo": ["nuôi chó có phải đăng ký với phường không", "đăng ký nuôi chó mèo ở đâu",
                "dang ky nuoi cho o xa", "nuôi chó trong chung cư cần giấy tờ gì"],
    "cay-xanh": ["xin chặt cây trước nhà ở đâu", "chặt cây xanh trên vỉa hè có cần xin phép",
                 "chat cay via he xin phep ai"],
}
PERSONAL = (" sđt 0912 345 678", " CCCD 001099012345", " email nguyenvana@gmail.com", "")


def _fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def _weighted(rng: random.Random, pairs) -> str:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def faq_questions(kb) -> list[tuple[str, str, str, str]]:
    """(question, entry id, title, kind) for every FAQ wording of a loaded knowledge base."""
    out = []
    for entry in kb.entries.values():
        for question in entry.values("cau_hoi"):
            out.append((question, entry.id, entry.title, entry.kind))
    return out


def generate_sample(log: QuestionLog, answered: list[tuple[str, str, str, str]], days: int = 30,
                    per_day: int = 60, seed: int = 7, now: datetime | None = None) -> int:
    """Write a generated log of `days` days ending at `now` into `log`; returns the number of questions."""
    rng = random.Random(seed)
    channels = sorted(((c.name, c.share) for c in registry().values() if c.share > 0), key=lambda c: -c[1])
    now = now or datetime.now(UTC)
    start = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    missing = [(topic, q) for topic, variants in MISSING.items() for q in variants]
    weights = [len(MISSING) - i for i, topic in enumerate(MISSING) for _ in MISSING[topic]]  # a few topics dominate
    popular = answered[: max(1, len(answered))]
    rng.shuffle(popular)
    popularity = [1 / (i + 1) ** 0.9 for i in range(len(popular))]
    clock = log.clock
    handoff = Handoff(log)
    count = 0
    try:
        with log.lock, log.db.atomic():
            for day in range(days):
                date = start + timedelta(days=day)
                busy = 0.45 if date.weekday() >= 5 else 1.0  # fewer questions at weekends
                growth = 0.7 + 0.6 * day / max(1, days - 1)  # the bot becomes known
                for _ in range(int(rng.gauss(per_day, per_day / 6) * busy * growth)):
                    at = date + timedelta(hours=min(22.9, max(6.0, rng.gauss(14, 3.5))), seconds=rng.randrange(3600))
                    if at > now:
                        continue
                    log.clock = _fixed(at)
                    channel = _weighted(rng, channels)
                    user = str(rng.randrange(1, per_day * 4))
                    roll = rng.random()
                    if roll < 0.2:
                        topic, question = rng.choices(missing, weights=weights)[0]
                        answer = Answer(question, "decline", confidence=round(rng.uniform(0.05, 0.45), 3))
                        feedback = -1 if rng.random() < 0.15 else None
                    elif roll < 0.25:
                        question = rng.choice(["xin chào", "cảm ơn bạn", "alo"])
                        answer = Answer(question, "greeting" if question != "cảm ơn bạn" else "thanks", confidence=1.0)
                        feedback = None
                    else:
                        question, entry_id, title, kind = rng.choices(popular, weights=popularity)[0]
                        answer = Answer(question, "answer", title=title, entry_id=entry_id,
                                        confidence=round(min(0.99, rng.betavariate(8, 2)), 3),
                                        sources=[Source(entry_id, title, kind, "", "", 1.0, [])])
                        feedback = rng.choices([1, -1, None], weights=[0.14, 0.03, 0.83])[0]
                    question += rng.choice(PERSONAL) if rng.random() < 0.05 else ""
                    latency = rng.lognormvariate(3.4, 0.35) + (rng.expovariate(1 / 400) if rng.random() < 0.02 else 0)
                    qid = log.record(channel=channel, user=user, question=question, answer=answer, latency_ms=latency)
                    if feedback is not None and qid is not None:
                        log.feedback(qid, feedback)
                    if answer.kind == "decline" and rng.random() < 0.08:  # some ask for a person after a decline
                        handoff.open_ticket(channel, user, BUTTON[1])
                    count += 1
    finally:
        log.clock = clock
    return count
