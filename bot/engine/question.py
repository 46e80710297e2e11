"""A question analysed once: every form of it that retrieval and answer composition read.

The engine builds one `Question` where it receives the text (`Retriever.analyse`, called by `Assistant.ask`);
retrieval, ranking features and the answer read its fields instead of folding and splitting the text again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .knowledge import CAN_CU, DOI_TUONG, HO_SO, KET_QUA, NOI_NOP, PHI, THOI_HAN, TRINH_TU, TRUC_TUYEN
from .text import acronyms_in, bigrams, clean, normalize, restore_diacritics, syllables

# Folded syllables that carry no topic: question words, pronouns, politeness.
STOPWORDS = frozenset(
    """a ah ak alo anh ban bi biet bo cac cach cai can cau chi cho chu co con cua cung da dang de den deu di
    dieu do duoc em gi giup hay hai hoi hoac hoi khi khong la lam lieu luc ma minh mot muon nao ne neu nha nhe
    nhieu nhu nhung noi o oi phai qua ra roi sao se tai the thi thu tuc toi tren tu va vay ve vi voi xin
    u uh vang dc ko k j z ntn""".split()
)
# What a question asks about, by folded phrases; matched on whole syllables.
ASPECTS: dict[str, tuple[str, ...]] = {
    HO_SO: ("giay to", "ho so", "can gi", "can nhung gi", "chuan bi", "mang theo", "thanh phan", "can nhung giay"),
    PHI: ("le phi", "phi", "bao nhieu tien", "mat tien", "ton tien", "chi phi", "mien phi", "het bao nhieu",
          "tien phi", "ton bao nhieu", "mat bao nhieu"),
    THOI_HAN: ("bao lau", "may ngay", "thoi han", "bao nhieu ngay", "thoi gian giai quyet", "khi nao co",
               "mat bao lau", "lau khong", "bao gio co", "trong bao lau"),
    NOI_NOP: ("o dau", "noi nop", "nop o", "lam o", "co quan nao", "cho nao", "nop dau", "lam dau", "di dau",
              "nop tai", "lam tai"),
    TRUC_TUYEN: ("online", "truc tuyen", "qua mang", "tren mang", "internet", "tai nha", "tren dien thoai",
                 "qua app", "qua ung dung"),
    CAN_CU: ("can cu", "luat nao", "nghi dinh nao", "quy dinh nao", "van ban nao", "co so phap ly", "phap ly",
             "theo luat", "quy dinh o dau"),
    TRINH_TU: ("cac buoc", "trinh tu", "the nao", "lam sao", "nhu the nao", "quy trinh", "nhung buoc",
               "cach lam", "lam the nao", "thu tuc gom"),
    DOI_TUONG: ("dieu kien", "ai duoc", "doi tuong", "co duoc khong"),
    KET_QUA: ("nhan duoc gi", "ket qua"),
}
# Phrases that name the act of filing, not the documents: "nộp hồ sơ online" asks how to file online.
NEUTRAL = ("nop ho so", "tra cuu ho so", "ho so da nop", "ho so cua toi", "theo doi ho so")
ASPECT_WORDS = frozenset(s for phrases in ASPECTS.values() for p in phrases for s in p.split())
DENSE_CHARS = 400  # the start of a long question carries its subject; encoding costs grow with length


def content_syllables(text: str) -> list[str]:
    """Folded syllables of a text without question words and politeness."""
    return [s for s in syllables(text) if s not in STOPWORDS]


def detect_aspects(text: str) -> list[str]:
    """The sections of a procedure a text asks for, in card order."""
    folded = " " + " ".join(syllables(text)) + " "
    for phrase in NEUTRAL:
        folded = folded.replace(f" {phrase} ", " _ ")
    found = [name for name, phrases in ASPECTS.items() if any(f" {p} " in folded for p in phrases)]
    if TRUC_TUYEN in found and NOI_NOP in found:
        found.remove(NOI_NOP)  # "nộp online ở đâu" asks for the online link
    return found


def expand_synonyms(folded: str, synonyms: Sequence[tuple[str, list[str]]]) -> list[str]:
    """Expansions of the dictionary terms a folded text contains (matched on whole words)."""
    padded = f" {folded} "
    out: list[str] = []
    for term, expansions in synonyms:
        key = " ".join(syllables(term))
        if key and f" {key} " in padded:
            out.extend(e for e in expansions if e not in out)
    return out


@dataclass(frozen=True)
class Question:
    """One citizen's question in every form the engine reads."""

    text: str  # cleaned: NFC, no tags or control characters, within the length limit
    syllables: tuple[str, ...]  # folded syllables (no diacritics, lower case)
    content: tuple[str, ...]  # the syllables without question words and politeness
    phrases: tuple[str, ...]  # adjacent syllable pairs that carry a topic (ket_hon)
    expansions: tuple[str, ...]  # what its dictionary terms and acronyms stand for
    dense_text: str  # what is encoded: diacritics restored, normalised, expansions appended
    aspects: tuple[str, ...]  # the procedure sections asked for (hồ sơ, lệ phí…)

    @property
    def folded(self) -> str:
        """The folded syllables as one string."""
        return " ".join(self.syllables)

    @property
    def empty(self) -> bool:
        """No word to search for (empty, emoji, punctuation)."""
        return not self.syllables

    @property
    def terms(self) -> list[str]:
        """What full-text search looks for: content syllables, telling pairs, and those of the expansions."""
        out = list(self.content) + list(self.phrases)
        for expansion in self.expansions:
            out += content_syllables(expansion) + bigrams(syllables(expansion))
        return out


def analyse(text: str, synonyms: Sequence[tuple[str, list[str]]] = (), acronyms: dict[str, str] | None = None,
            restore: dict[str, str] | None = None) -> Question:
    """Analyse a question against the index's dictionary, learned acronyms and diacritic restoration table."""
    text = clean(text)
    tokens = syllables(text)
    if not tokens:
        return Question(text, (), (), (), (), "", ())
    expansions = expand_synonyms(" ".join(tokens), synonyms)
    expansions += [p for p in acronyms_in(text, acronyms or {}) if p not in expansions]
    dense = normalize(restore_diacritics(clean(text, DENSE_CHARS), restore or {}))
    if expansions:
        dense += " (" + "; ".join(expansions) + ")"
    phrases = [b for b in bigrams(tokens) if not all(p in STOPWORDS for p in b.split("_"))]
    return Question(text=text, syllables=tuple(tokens), content=tuple(s for s in tokens if s not in STOPWORDS),
                    phrases=tuple(phrases), expansions=tuple(expansions), dense_text=dense,
                    aspects=tuple(detect_aspects(text)))
