"""How well `python -m bot review` groups unanswered questions, on a generated log with known topics.

    python -m bench.grouping

Generates the sample log (seed 7, 30 days) in a temporary folder, takes the questions review would list
(declined or 👎), labels each with its true group (the missing topic it was generated from, or the entry a 👎
answer came from), and prints, for the e5 encoder (with diacritics restored, as review does) and for a lexical
baseline (cosine of syllable sets) at several thresholds: the number of groups, purity (share of questions in
their group's majority label) and how many groups the five missing topics are spread over.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from bot.config import load_config
from bot.engine.assistant import Assistant
from bot.engine.knowledge import load_knowledge
from bot.engine.text import fold, syllables
from bot.service.qlog import QuestionLog
from bot.staff.review import _bare, _key, group, needs_review, prepare_for
from bot.staff.sample import MISSING, faq_questions, generate_sample


class SyllableSets:
    """The lexical baseline: a question as the unit vector of its set of folded syllables."""

    def encode(self, texts, role="query"):
        sets = [set(syllables(fold(t))) for t in texts]
        vocab = {w: i for i, w in enumerate(sorted(set().union(*sets)))}
        m = np.zeros((len(texts), max(1, len(vocab))))
        for i, s in enumerate(sets):
            for w in s:
                m[i, vocab[w]] = 1
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)


def main() -> int:
    """Print the grouping quality table."""
    cfg = load_config()
    truth_keys = {_key(v): topic for topic, variants in MISSING.items() for v in variants}
    with tempfile.TemporaryDirectory() as folder:
        log = QuestionLog(Path(folder) / "q.db", b"bench")
        generate_sample(log, faq_questions(load_knowledge(cfg.knowledge_dirs)))
        rows = log.questions()
        log.close()
    todo = [r for r in rows if needs_review(r)]
    label = {r["id"]: truth_keys.get(_key(_bare(r["question"])), r["entry_id"]) for r in todo}
    assistant = Assistant(cfg).load()
    print(f"{len(todo)} questions to review, {len(set(label.values()))} true groups, "
          f"{len(MISSING)} missing topics\n")
    print("| method | threshold | groups | purity | groups per missing topic |")
    print("| --- | --- | --- | --- | --- |")
    runs = [("e5, diacritics restored", assistant.encoder, prepare_for(assistant), (0.86, 0.88, 0.90, 0.92)),
            ("syllable sets (lexical)", SyllableSets(), None, (0.3, 0.4, 0.5))]
    for name, encoder, prepare, thresholds in runs:
        for threshold in thresholds:
            clusters = group(rows, encoder, threshold, prepare)
            pure = sum(Counter(label[i] for i in c.ids).most_common(1)[0][1] for c in clusters)
            spread = Counter(topic for c in clusters for topic in {label[i] for i in c.ids})
            print(f"| {name} | {threshold:.2f} | {len(clusters)} | {pure / len(todo):.3f} | "
                  f"{[spread[t] for t in MISSING]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
