"""Sibling procedures: the same procedure apart from what is done (cấp / cấp lại / gia hạn / đổi / điều chỉnh / bổ sung)
or the level that does it (bộ / tỉnh / xã). When a question's best candidates are siblings that score about the same,
the bot asks which one is meant instead of guessing. All of it is pure."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .text import fold

# Below this gap in rank score (bot/engine/features.py: the top candidates of a question usually lie within 0.1 of
# each other) two siblings are a tie: the ranking cannot tell them apart, the citizen can.
MARGIN = 0.03
MAX_CHOICES = 4  # buttons offered at most

# What is done, as a title names it before the thing it is done to (folded, longest first).
ACTIONS = ("cap doi", "cap lai", "cap moi", "cap", "gia han", "doi ten", "doi", "dieu chinh", "bo sung", "sua doi",
           "thay doi", "lan dau")
# The level that does it.
LEVELS = ("trung uong", "bo", "tinh", "huyen", "xa")
_LEVEL = re.compile(r"\b(?:(?:thuc hien )?(?:tai |o )?cap (?:" + "|".join(LEVELS) + r"))\b")
_ACTION = re.compile(r"^(?:(?:thu tuc|" + "|".join(ACTIONS) + r")\b[\s,;]*(?:va |hoac )?)+")
_ONE_ACTION = re.compile(r"\b(?:thu tuc|" + "|".join(ACTIONS) + r")\b")
_SAME = {"cap moi": "cap", "lan dau": "cap", "cap doi": "doi"}  # one action, said two ways
_PARENS = re.compile(r"\([^()]*\)")
# Words of a question that choose one sibling: the action or the level it names.
_ASKED_ACTIONS = {  # a question's words → the action they mean
    "cap lai": "cap lai", "lam lai": "cap lai", "bi mat": "cap lai", "lam mat": "cap lai", "bi hong": "cap lai",
    # "đổi" folds to "doi" like "đối" (đối với, đối tượng) and "đợi": only where it means exchanging a document
    "gia han": "gia han", "het han": "gia han", "cap doi": "doi", "doi lai": "doi", "doi sang": "doi",
    "doi the": "doi", "doi giay": "doi", "doi bang": "doi", "doi ho chieu": "doi", "doi can cuoc": "doi",
    "doi cccd": "doi", "dieu chinh": "dieu chinh",
    "bo sung": "bo sung", "sua doi": "sua doi", "lan dau": "cap", "cap moi": "cap", "moi sinh": "cap",
}


def stem(title: str, glosses: bool = True) -> str:
    """What a procedure's title names once its actions and levels are taken away: 'Cấp, cấp lại Giấy phép X cấp
    tỉnh' → 'giay phep x'. `glosses`: parentheses are plain-words glosses (curated titles) and go too; an imported
    title's parentheses say whom it is for and stay."""
    text = fold(title).lower()
    if glosses:
        text = _PARENS.sub(" ", text)
    text = _LEVEL.sub(" ", text)
    text = re.sub(r"[^\w()]+", " ", text).strip()
    text = _ACTION.sub("", text)
    text = re.sub(r"\blan dau\b", " ", text)
    return " ".join(text.split())


def actions(title: str) -> frozenset[str]:
    """What a title says is done ('cap', 'cap lai', …; a first issue is 'cap') and at which level ('tinh', …)."""
    text = re.sub(r"[^\w]+", " ", fold(title).lower())
    found = {level.group(0).split("cap ")[-1] for level in _LEVEL.finditer(text)}
    head = _ACTION.match(text)
    if head:
        found |= {_SAME.get(m.group(0), m.group(0)) for m in _ONE_ACTION.finditer(head.group(0))}
    if re.search(r"\blan dau\b", text):
        found.add("cap")
    found.discard("thu tuc")
    return frozenset(found)


def asked_choices(folded: str) -> frozenset[str]:
    """The actions and levels a question names."""
    found = {action for words, action in _ASKED_ACTIONS.items() if re.search(rf"\b{words}\b", folded)}
    found |= {level for level in LEVELS if re.search(rf"\bcap {level}\b", folded)}
    return frozenset(found)


def are_siblings(a: str, b: str, glosses_a: bool = True, glosses_b: bool = True) -> bool:
    """Whether two titles name the same procedure apart from its action or its level."""
    if fold(a).lower() == fold(b).lower():
        return False
    sa, sb = stem(a, glosses_a), stem(b, glosses_b)
    return bool(sa) and sa == sb


def tied_siblings(folded: str, ranked: Sequence[tuple[str, float]], titles: Mapping[str, tuple[str, bool]],
                  margin: float = MARGIN) -> list[str]:
    """The procedures to ask the citizen to choose from, best first, or [] when the question is clear.

    `ranked`: (entry id, rank score) of the candidates, best first, the first being the one the bot would answer;
    `titles`: each procedure's (title, imported). The question is unclear when the next candidates within `margin`
    of the first include its siblings and the question's own words (an action like "cấp lại", a level like "cấp
    xã") do not pick one of them out."""
    if not ranked or ranked[0][0] not in titles:
        return []
    top, best = ranked[0]
    title, imported = titles[top]
    tied = [top]
    for entry_id, score in ranked[1:]:
        if best - score > margin:
            break
        if entry_id in titles and entry_id not in tied:
            other, other_imported = titles[entry_id]
            if are_siblings(title, other, not imported, not other_imported):
                tied.append(entry_id)
    if len(tied) < 2:
        return []
    asked = asked_choices(folded)
    if asked:
        named = [e for e in tied if actions(titles[e][0]) & asked]
        if top in named and len(named) < len(tied):
            return []  # the question's own words choose the first
    return tied[:MAX_CHOICES]
