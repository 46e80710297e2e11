"""Section choice: for questions about one part of a plan or a reform topic, is the first section shown the right one?

    python -m bench.sections [bench/sections.tsv] [--show-misses]

Each question of bench/sections.tsv is asked in a fresh conversation of the serving index. A question is right when
the answer is about the labelled entry and its first part headed by one of the entry's section headings is the
labelled section; for two labelled sections, the first shown is one of them and both are shown; for "*" (the whole
document), no one section is shown and the answer names every section of the entry. The script reads only the
`Answer` (title, parts, entry id), so it scores older code the same way (run it from a checkout of that code).
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT = Path(__file__).with_name("sections.tsv")
WHOLE = "*"


@dataclass(frozen=True)
class Case:
    """One labelled question."""

    question: str
    entry: str
    headings: tuple[str, ...]  # () for the whole document
    batch: str = ""  # the "#batch: NAME" line above it, if any

    @property
    def typed_without_diacritics(self) -> bool:
        """Typed in plain ASCII letters, as many citizens do."""
        return all(ord(c) < 128 for c in self.question)


def load_cases(path: str | Path) -> list[Case]:
    """question, entry id, heading (or 'A | B', or '*'), tab-separated; '#' starts a comment line, '#batch: NAME'
    tags the questions after it."""
    cases = []
    batch = ""
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#batch:"):
            batch = line.partition(":")[2].strip()
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{path}:{n}: expected question, entry id and heading separated by tabs")
        question, entry, label = (p.strip() for p in parts)
        headings = () if label == WHOLE else tuple(h.strip() for h in label.split("|"))
        cases.append(Case(unicodedata.normalize("NFC", question), entry, headings, batch))
    return cases


def shown_sections(answer, section_headings: list[str]) -> list[str]:
    """The entry's sections an answer shows as parts under their heading, in order."""
    return [heading for heading, _ in answer.parts if heading in section_headings]


def judge(case: Case, answer, section_headings: list[str]) -> tuple[bool, bool, list[str]]:
    """(right entry, right first section, sections shown)."""
    entry_ok = answer.kind == "answer" and answer.entry_id == case.entry
    shown = shown_sections(answer, section_headings) if entry_ok else []
    if not entry_ok:
        return False, False, shown
    if not case.headings:
        text = "\n".join(t for _, t in answer.parts)
        return True, not shown and all(h in text for h in section_headings), shown
    first_ok = bool(shown) and shown[0] in case.headings and all(h in shown for h in case.headings)
    return True, first_ok, shown


@dataclass
class Tally:
    """Right answers among questions of one kind."""

    n: int = 0
    entry: int = 0
    first: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, entry_ok: bool, first_ok: bool) -> None:
        self.n += 1
        self.entry += entry_ok
        self.first += first_ok

    def line(self, name: str) -> str:
        n = max(self.n, 1)
        return (f"{name}: {self.n} questions, first section right {self.first}/{self.n} ({self.first / n:.3f}), "
                f"right entry {self.entry}/{self.n} ({self.entry / n:.3f})")


def run(ask, entries, cases: list[Case]) -> dict[str, Tally]:
    """Ask every question (fresh conversation each) and tally: all, plans, topics, typed without diacritics."""
    names = ["all", "plans", "topics", "without diacritics", "two sections", "whole"]
    names += [f"batch {b}" for b in dict.fromkeys(c.batch for c in cases) if b]
    tallies = {name: Tally() for name in names}
    for case in cases:
        answer = ask(case.question)
        record = entries.get(case.entry)
        if record is None:
            raise ValueError(f"{case.entry}: no such entry in the serving index")
        headings = [s.heading for s in record.sections]
        missing = [h for h in case.headings if h not in headings]
        if missing:
            raise ValueError(f"{case.entry} has no section {missing[0]!r} (question {case.question!r})")
        entry_ok, first_ok, shown = judge(case, answer, headings)
        groups = ["all", "plans" if record.kind == "plan" else "topics"]
        groups += ["without diacritics"] * case.typed_without_diacritics
        groups += ["two sections"] * (len(case.headings) > 1) + ["whole"] * (not case.headings)
        groups += [f"batch {case.batch}"] * bool(case.batch)
        for group in groups:
            tallies[group].add(entry_ok, first_ok)
        if not first_ok:
            expected = " | ".join(case.headings) or WHOLE
            got = f"{answer.kind} {answer.entry_id}" if not entry_ok else (" | ".join(shown) or "no section")
            tallies["all"].misses.append(f"MISS: {case.question}\n  expected {case.entry}: {expected}\n  got {got}")
    return tallies


def main(argv: list[str] | None = None) -> int:
    """Score the serving index's answers on the section questions."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", default=str(DEFAULT))
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args(argv)
    from bot.config import load_config
    from bot.engine.answer import Conversation
    from bot.engine.assistant import Assistant

    assistant = Assistant(load_config()).load()
    assert assistant.data is not None
    tallies = run(lambda q: assistant.ask(q, Conversation()), assistant.data.entries, load_cases(args.file))
    if args.show_misses:
        print("\n".join(tallies["all"].misses))
    for name, tally in tallies.items():
        if tally.n:
            print(tally.line(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
