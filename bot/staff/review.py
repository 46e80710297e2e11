"""What the bot could not answer: unanswered and 👎 questions grouped by similarity, and FAQ drafts for them.

Grouping embeds each distinct question with the assistant's encoder (diacritics restored as the retriever does)
and clusters the vectors by average linkage, so forty wordings of one missing topic show as one line with a count.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.engine.answer import NOT_ANSWERED
from bot.engine.text import fold, has_diacritics

THRESHOLD = 0.90  # cosine similarity of e5 query vectors, diacritics restored: on the generated log, groups are pure
PLACEHOLDER = re.compile(r"\[(?:số CCCD|số CMND|số điện thoại|email|mã hồ sơ)\]")
PERSONAL_LABEL = re.compile(r"(?:\b(?:sđt|sdt|số điện thoại|điện thoại|cccd|cmnd|số|email|mail|mã hồ sơ|hồ sơ)\s*:?\s*)?"
                            r"\[(?:số CCCD|số CMND|số điện thoại|email|mã hồ sơ)\]", re.I)


@dataclass
class Cluster:
    """One missing topic: how often it was asked, its wordings, and the closest entry the base has."""

    count: int
    example: str
    questions: list[tuple[str, int]]  # (wording, times asked), most asked first
    declined: int = 0
    thumbs_down: int = 0
    closest: tuple[str, str, float] | None = None  # (entry id, title, retrieval score)
    ids: list[int] = field(default_factory=list)  # logged question ids
    not_held: int = 0  # asked about a procedure the base does not hold
    sector: str = ""  # for those: the agency of the closest procedure the portal lists (what to import next)


def _bare(question: str) -> str:
    """A question without its masked personal data (and the word naming it), as an example to show."""
    return re.sub(r"\s+", " ", PERSONAL_LABEL.sub(" ", question)).strip(" ,.") or question


def needs_review(row: dict[str, Any]) -> bool:
    """A logged question staff should look at: not answered from the knowledge base, or answered with a 👎."""
    return row["kind"] in NOT_ANSWERED or row["feedback"] == -1


def _key(question: str) -> str:
    """Wordings that differ only in case, diacritics, punctuation or masked personal data are one."""
    return " ".join(re.findall(r"[0-9a-z]+", fold(PLACEHOLDER.sub(" ", question))))


def group(rows: list[dict[str, Any]], encoder, threshold: float = THRESHOLD,
          prepare: Callable[[str], str] | None = None) -> list[Cluster]:
    """Group the rows needing review by similarity of their questions (average-linkage clustering of their
    vectors, cut at `threshold` cosine similarity); largest groups first. `prepare` readies a question for the
    encoder as the retriever does (diacritics restored)."""
    rows = [r for r in rows if needs_review(r) and r["question"].strip()]
    if not rows:
        return []
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(_key(_bare(row["question"])), []).append(row)
    keys = sorted(by_key, key=lambda k: (-len(by_key[k]), k))
    texts = [_bare(Counter(r["question"] for r in by_key[k]).most_common(1)[0][0]) for k in keys]
    if encoder is None:  # no model at hand: identical wordings only
        labels = np.arange(len(keys))
    elif len(keys) == 1:
        labels = np.ones(1, dtype=int)
    else:
        labels = _labels(encoder, [prepare(t) for t in texts] if prepare else texts, threshold)
    members: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(int(label), []).append(i)
    clusters = []
    for group_members in members.values():
        wordings = [(texts[i], len(by_key[keys[i]])) for i in group_members]
        wordings.sort(key=lambda w: (-w[1], not has_diacritics(w[0])))  # ties: the wording with diacritics
        grouped = [r for i in group_members for r in by_key[keys[i]]]
        clusters.append(Cluster(
            count=len(grouped), example=wordings[0][0], questions=wordings,
            declined=sum(r["kind"] in NOT_ANSWERED for r in grouped),
            thumbs_down=sum(r["feedback"] == -1 for r in grouped),
            ids=sorted(r["id"] for r in grouped),
            not_held=sum(r["kind"] in ("not_held", "listed") for r in grouped)))
    clusters.sort(key=lambda c: (-c.count, c.example))
    return clusters


def _labels(encoder, texts: list[str], threshold: float) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors = np.asarray(encoder.encode(texts, role="query"), dtype=np.float64)
    return fcluster(linkage(vectors, method="average", metric="cosine"), t=1 - threshold, criterion="distance")


def prepare_for(assistant) -> Callable[[str], str]:
    """Ready a question for the encoder as the assistant's retriever does (diacritics restored)."""
    from bot.engine.text import clean, normalize, restore_diacritics

    assistant.refresh()
    restore = assistant.data.restore
    return lambda q: normalize(restore_diacritics(clean(q), restore))


def add_closest(clusters: list[Cluster], assistant) -> None:
    """Name, for each group, the entry the retriever ranks first for its example (what the bot would cite)."""
    assistant.refresh()
    for cluster in clusters:
        result = assistant.retriever.search(cluster.example)
        if cluster.not_held and result.listings:
            cluster.sector = result.listings[0].listing.agency
        if result.hits:
            hit = result.hits[0]
            cluster.closest = (hit.entry_id, assistant.data.entries[hit.entry_id].title, round(hit.score, 3))


def slug(text: str, words: int = 7) -> str:
    """An entry id from a question: lower-case, no diacritics, dashes."""
    parts = [w for w in re.findall(r"[0-9a-z]+", fold(PLACEHOLDER.sub(" ", text)))][:words]
    return "-".join(parts) or "cau-hoi"


def draft_text(cluster: Cluster, entry_id: str, related: str, today: dt.date) -> str:
    """An FAQ file in the knowledge format, with every asked wording and no answer yet (`--check` refuses it)."""
    wordings = [q for q, _ in cluster.questions if not PLACEHOLDER.search(q)][:12] or [cluster.example]
    lines = [
        "---",
        f"# BẢN NHÁP từ nhật ký câu hỏi: {cluster.count} lượt hỏi ({cluster.declined} không trả lời được, "
        f"{cluster.thumbs_down} 👎), lập ngày {today.isoformat()}.",
        "# Cần làm: viết câu trả lời sau dòng '---' cuối, sửa 'lien_quan' cho đúng mục liên quan, bỏ các dòng #,",
        "# chuyển tệp vào knowledge/hoi-dap/, chạy `index_builder.py --check` rồi `index_builder.py`.",
    ]
    if cluster.closest:
        lines.append(f"# Mục gần nhất hiện có: {cluster.closest[0]} — {cluster.closest[1]}")
    lines += [f"id: {entry_id}", "loai: hoi-dap", "cau_hoi:"]
    lines += [f'  - "{q}"' if re.search(r"[:#\[\]{}\"]", q) else f"  - {q}" for q in wordings]
    lines += [f"lien_quan: [{related}]", f"ngay_kiem_tra: {today.isoformat()}", "---", "", ""]
    return "\n".join(lines)


def export_drafts(clusters: list[Cluster], folder: Path, known_ids: set[str], today: dt.date | None = None,
                  fallback_related: str = "") -> list[Path]:
    """Write one FAQ draft per group into `folder` (not a knowledge folder: nothing goes live); returns the files."""
    today = today or dt.date.today()
    folder.mkdir(parents=True, exist_ok=True)
    written, taken = [], set(known_ids)
    for cluster in clusters:
        base = "hoi-dap-" + slug(cluster.example)
        entry_id, n = base, 2
        while entry_id in taken or (folder / f"{entry_id}.md").exists():
            entry_id, n = f"{base}-{n}", n + 1
        taken.add(entry_id)
        related = cluster.closest[0] if cluster.closest else fallback_related
        path = folder / f"{entry_id}.md"
        path.write_text(draft_text(cluster, entry_id, related, today), encoding="utf-8")
        written.append(path)
    return written


def format_clusters(clusters: list[Cluster], limit: int = 50) -> str:
    """The review as text for a terminal."""
    if not clusters:
        return "Không có câu hỏi nào chưa trả lời được hoặc bị chấm 👎."
    out = [f"{len(clusters)} nhóm câu hỏi chưa trả lời được hoặc bị chấm 👎 (nhóm lớn trước):", ""]
    for n, c in enumerate(clusters[:limit], 1):
        out.append(f"{n:>3}. {c.count} lượt — \"{c.example}\" ({c.declined} không trả lời được, {c.thumbs_down} 👎)")
        for q, times in c.questions[1:4]:
            out.append(f"       cũng hỏi: \"{q}\"" + (f" ×{times}" if times > 1 else ""))
        if len(c.questions) > 4:
            out.append(f"       … và {len(c.questions) - 4} cách hỏi khác")
        if c.closest:
            out.append(f"       mục gần nhất: {c.closest[0]} — {c.closest[1]}")
        if c.not_held:
            out.append(f"       {c.not_held} lượt hỏi thủ tục chưa có trong kho" + (f" (gần nhất trên Cổng: {c.sector})"
                                                                            if c.sector else ""))
    if len(clusters) > limit:
        out.append(f"… và {len(clusters) - limit} nhóm nhỏ hơn")
    sectors = Counter[str]()
    for c in clusters:
        if c.not_held:
            sectors[c.sector or "chưa rõ lĩnh vực"] += c.not_held
    if sectors:
        out += ["", "Hỏi về thủ tục chưa có trong kho, theo bộ/ngành của thủ tục gần nhất trên Cổng (nên nhập trước):"]
        out += [f"  {n:>4} lượt — {sector}" for sector, n in sectors.most_common()]
    return "\n".join(out)
