"""A self-contained HTML report of the question log: volumes, answer rate, feedback, top entries, gaps, latency.

Charts are drawn with matplotlib and embedded as base64 PNG, so the file opens anywhere with no external asset.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from bot.channels import registry
from bot.engine.answer import NOT_ANSWERED

from .review import Cluster


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """'30d', '8w', '12h' or a date '2026-11-01' → the start of the period (UTC)."""
    text = (text or "").strip().lower()
    match = re.fullmatch(r"(\d+)\s*([dwh])", text)
    if match:
        n, unit = int(match.group(1)), match.group(2)
        return now - {"d": dt.timedelta(days=n), "w": dt.timedelta(weeks=n), "h": dt.timedelta(hours=n)}[unit]
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"'{text}' không phải khoảng thời gian: dùng dạng 30d, 8w, 12h hoặc ngày 2026-11-01") from None


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90 and p99 of latencies (ms), or {} when there are none."""
    if not values:
        return {}
    p = np.percentile(np.asarray(values, dtype=float), [50, 90, 99])
    return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2])}


def summarize(rows: list[dict[str, Any]], tickets: int = 0) -> dict[str, Any]:
    """The report's figures from logged questions (pure: no I/O)."""
    questions = [r for r in rows if r["kind"] in ("answer", *NOT_ANSWERED)]  # greetings and thanks are not questions
    answered = [r for r in questions if r["kind"] == "answer"]
    rated = [r for r in rows if r["feedback"] in (1, -1)]
    up = sum(r["feedback"] == 1 for r in rated)
    entries: dict[str, dict[str, Any]] = {}
    for r in answered:
        item = entries.setdefault(r["entry_id"], {"id": r["entry_id"], "title": r["title"] or r["entry_id"],
                                                  "count": 0, "up": 0, "down": 0})
        item["count"] += 1
        item["up"] += r["feedback"] == 1
        item["down"] += r["feedback"] == -1
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    declined_day: Counter[str] = Counter()
    for r in questions:
        day = r["asked_at"][:10]
        per_day[day][r["channel"]] += 1
        declined_day[day] += r["kind"] in NOT_ANSWERED
    return {
        "messages": len(rows), "questions": len(questions), "answered": len(answered),
        "declined": len(questions) - len(answered),
        "answer_rate": len(answered) / len(questions) if questions else None,
        "feedback_rate": len(rated) / len(questions) if questions else None,
        "satisfaction": up / len(rated) if rated else None, "up": up, "down": len(rated) - up,
        "latency": percentiles([r["latency_ms"] for r in questions if r["latency_ms"] is not None]),
        "top_entries": sorted(entries.values(), key=lambda e: (-e["count"], e["id"]))[:15],
        "per_day": dict(sorted(per_day.items())), "declined_day": dict(declined_day),
        "channels": Counter(r["channel"] for r in questions), "tickets": tickets,
        "first": rows[0]["asked_at"] if rows else None, "last": rows[-1]["asked_at"] if rows else None,
    }


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def charts(summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str]:
    """The report's charts as PNG data URLs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    colors = {c.name: c.color for c in registry().values()}
    days = list(summary["per_day"])
    if days:
        x = np.arange(len(days))
        labels = [f"{d[8:10]}/{d[5:7]}" for d in days]
        step = max(1, len(days) // 15)
        fig, ax = plt.subplots(figsize=(9, 3.2))
        bottom = np.zeros(len(days))
        for channel in sorted(summary["channels"], key=lambda c: -summary["channels"][c]):
            values = np.array([summary["per_day"][d][channel] for d in days], dtype=float)
            ax.bar(x, values, bottom=bottom, label=channel, color=colors.get(channel))
            bottom += values
        ax.set_xticks(x[::step], labels[::step])
        ax.set_ylabel("câu hỏi")
        ax.set_title("Câu hỏi mỗi ngày theo kênh")
        ax.legend(frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        out["per_day"] = _png(fig)

        fig, ax = plt.subplots(figsize=(9, 2.8))
        totals = bottom
        declined = np.array([summary["declined_day"].get(d, 0) for d in days], dtype=float)
        rate = np.divide(totals - declined, totals, out=np.zeros_like(totals), where=totals > 0) * 100
        ax.plot(x, rate, color="#2E7D32", marker="o", markersize=3, label="trả lời được")
        ax.plot(x, 100 - rate, color="#C62828", marker="o", markersize=3, label="không trả lời được")
        ax.set_ylim(0, 100)
        ax.set_xticks(x[::step], labels[::step])
        ax.set_ylabel("%")
        ax.set_title("Tỷ lệ trả lời được / không trả lời được mỗi ngày")
        ax.legend(frameon=False, loc="center right")
        ax.spines[["top", "right"]].set_visible(False)
        out["rate"] = _png(fig)

    latencies = [r["latency_ms"] for r in rows if r["kind"] in ("answer", *NOT_ANSWERED) and r["latency_ms"] is not None]
    if latencies:
        fig, ax = plt.subplots(figsize=(9, 2.8))
        top = float(np.percentile(latencies, 99.5))
        ax.hist([min(v, top) for v in latencies], bins=40, color="#5C6BC0")
        for name, value in summary["latency"].items():
            ax.axvline(min(value, top), color="#333", linestyle="--", linewidth=1)
            ax.text(min(value, top), ax.get_ylim()[1] * 0.92, f" {name} {value:.0f} ms", fontsize=8)
        ax.set_xlabel("thời gian trả lời (ms)")
        ax.set_title("Thời gian trả lời")
        ax.spines[["top", "right"]].set_visible(False)
        out["latency"] = _png(fig)
    return out


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def render_html(summary: dict[str, Any], images: dict[str, str], clusters: list[Cluster], period: str,
                generated: dt.datetime, sample: bool = False) -> str:
    """The whole report as one HTML page (escaped: questions are citizens' text)."""
    e = html.escape
    latency = summary["latency"]
    cards = [
        ("Câu hỏi", f"{summary['questions']:,}".replace(",", ".")),
        ("Trả lời được", _pct(summary["answer_rate"])),
        ("Không trả lời được", f"{summary['declined']:,}".replace(",", ".")),
        ("Tỷ lệ đánh giá", _pct(summary["feedback_rate"])),
        ("Hài lòng (trong số có đánh giá)", _pct(summary["satisfaction"])),
        ("Thời gian trả lời p50 / p90 / p99",
         " / ".join(f"{latency[k]:.0f}" for k in ("p50", "p90", "p99")) + " ms" if latency else "—"),
        ("Yêu cầu gặp cán bộ", str(summary["tickets"])),
    ]
    parts = [
        "<!doctype html><html lang='vi'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>Trợ lý CCHC — báo cáo câu hỏi</title><style>",
        "body{font-family:system-ui,'Segoe UI',Roboto,Arial,sans-serif;margin:24px auto;max-width:1000px;color:#222;"
        "padding:0 16px}h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid"
        " #ddd;padding-bottom:4px}.muted{color:#666}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}"
        ".card{border:1px solid #ddd;border-radius:8px;padding:10px 14px;min-width:120px}.card b{display:block;"
        "font-size:20px}table{border-collapse:collapse;width:100%;font-size:14px}td,th{border-bottom:1px solid #eee;"
        "padding:6px;text-align:left;vertical-align:top}th{background:#f6f6f6}td.n{text-align:right;white-space:"
        "nowrap}img{max-width:100%}.sample{background:#FFF3CD;border:1px solid #E0C36A;padding:8px;border-radius:6px}",
        "</style></head><body>",
        "<h1>Trợ lý CCHC — người dân đã hỏi gì</h1>",
        f"<p class='muted'>Khoảng thời gian: {e(period)} · lập lúc {generated:%d/%m/%Y %H:%M} UTC · "
        f"{summary['messages']} tin nhắn, trong đó {summary['questions']} câu hỏi (không kể lời chào, cảm ơn).</p>",
    ]
    if sample:
        parts.append("<p class='sample'>Báo cáo mẫu, dựng từ nhật ký sinh ngẫu nhiên (<code>python -m bot report "
                     "--sample</code>), không phải số liệu thật.</p>")
    parts.append("<div class='cards'>" + "".join(f"<div class='card'><span class='muted'>{e(k)}</span><b>{e(v)}</b>"
                                                  "</div>" for k, v in cards) + "</div>")
    channels = ", ".join(f"{e(c)} {n}" for c, n in summary["channels"].most_common())
    parts.append(f"<p>Theo kênh: {channels or '—'}. Đánh giá: {summary['up']} hài lòng, {summary['down']} không hài lòng.</p>")
    for key, title in (("per_day", "Câu hỏi mỗi ngày"), ("rate", "Trả lời được và không trả lời được")):
        if key in images:
            parts.append(f"<h2>{title}</h2><img alt='{title}' src='{images[key]}'>")
    parts.append("<h2>Câu hỏi chưa trả lời được (nhóm theo nội dung)</h2>")
    if clusters:
        parts.append("<table><tr><th>Lượt</th><th>Câu hỏi tiêu biểu</th><th>Cách hỏi khác</th><th>Không hài lòng</th>"
                     "<th>Mục gần nhất hiện có</th></tr>")
        for c in clusters[:15]:
            others = "<br>".join(e(q) for q, _ in c.questions[1:4])
            closest = f"{e(c.closest[1])} <span class='muted'>({e(c.closest[0])})</span>" if c.closest else "—"
            parts.append(f"<tr><td class='n'>{c.count}</td><td>{e(c.example)}</td><td>{others}</td>"
                         f"<td class='n'>{c.thumbs_down}</td><td>{closest}</td></tr>")
        parts.append("</table><p class='muted'>Soạn câu trả lời cho các nhóm này: <code>python -m bot review "
                     "--export data/drafts</code>.</p>")
    else:
        parts.append("<p>Không có.</p>")
    parts.append("<h2>Mục được hỏi nhiều nhất</h2>")
    if summary["top_entries"]:
        parts.append("<table><tr><th>Lượt</th><th>Mục</th><th>Hài lòng</th><th>Không hài lòng</th></tr>")
        for item in summary["top_entries"]:
            parts.append(f"<tr><td class='n'>{item['count']}</td><td>{e(item['title'])} <span class='muted'>"
                         f"({e(item['id'])})</span></td><td class='n'>{item['up']}</td>"
                         f"<td class='n'>{item['down']}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>Không có.</p>")
    if "latency" in images:
        parts.append(f"<h2>Thời gian trả lời</h2><img alt='Thời gian trả lời' src='{images['latency']}'>")
    parts.append("<p class='muted'>Câu hỏi đã được che thông tin cá nhân (số CCCD/CMND, số điện thoại, email, mã hồ "
                 "sơ) trước khi lưu; người hỏi chỉ được lưu dưới dạng mã ẩn danh.</p></body></html>")
    return "\n".join(parts)
