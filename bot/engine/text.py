"""Vietnamese text normalisation: NFC, tone-mark normalisation, cleaning and diacritic folding."""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

MAX_QUESTION_CHARS = 1000

_TAG = re.compile(r"<[^>\n]{0,200}>")
# Control and format characters, bidirectional overrides (they can make a quoted question read backwards) and
# lone surrogates (they cannot be written out as UTF-8).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")
_SOFT_HYPHEN = "\u00ad"
_SPACES = re.compile(r"\s+")
_SYLLABLE = re.compile(r"[0-9a-z]+(?:[./][0-9a-z]+)*")
_FINAL_Y = re.compile(r"^([bcdghklmnprstvx]+)y$")
_COMBINING = re.compile(r"[\u0300-\u036f]")


def nfc(text: str) -> str:
    """Compose Unicode to NFC, the form the embedding model was trained on."""
    return unicodedata.normalize("NFC", text)


def clean(text: str, limit: int | None = MAX_QUESTION_CHARS) -> str:
    """Make untrusted input safe to process: NFC, no HTML tags or control characters, one-line spacing."""
    text = nfc(html.unescape(_TAG.sub(" ", text)))
    text = _CONTROL.sub(" ", text.replace(_SOFT_HYPHEN, ""))
    text = _SPACES.sub(" ", text).strip()
    return text if limit is None else cut_words(text, limit)


def cut_words(text: str, limit: int) -> str:
    """The beginning of a text within `limit` characters, cut between words where one ends past half the limit."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip()


@lru_cache(maxsize=1)
def _underthesea_normalize():
    from underthesea import text_normalize  # heavy import: only when text is really normalised

    return text_normalize


def normalize(text: str) -> str:
    """NFC plus underthesea's normalisation of tone-mark placement (hoà → hòa)."""
    text = nfc(text)
    if not text.strip():
        return ""
    return nfc(_underthesea_normalize()(text))


def fold(text: str) -> str:
    """Lower-case and strip every diacritic, mapping đ/Đ to d (Unicode decomposition does not)."""
    text = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return unicodedata.normalize("NFC", _COMBINING.sub("", text)).lower()


def has_diacritics(text: str) -> bool:
    """True when the text carries Vietnamese diacritics (so word segmentation is meaningful)."""
    return fold(text) != text.lower()


def syllables(text: str) -> list[str]:
    """Folded syllables for lexical matching; 'ky'/'ki' spellings are merged, codes like 1.001193 kept."""
    out = []
    for token in _SYLLABLE.findall(fold(text)):
        out.append(_FINAL_Y.sub(r"\1i", token))
    return out


def bigrams(tokens: list[str]) -> list[str]:
    """Adjacent syllable pairs joined by '_': Vietnamese words are mostly two syllables (kết hôn → ket_hon)."""
    return [f"{a}_{b}" for a, b in zip(tokens, tokens[1:])]


def lexical_form(text: str) -> str:
    """What the full-text index stores: folded syllables, then their bigrams, line by line."""
    out = []
    for line in text.split("\n"):
        tokens = syllables(line)
        out.append(" ".join(tokens + bigrams(tokens)))
    return "\n".join(out)


_LIST_ITEM = re.compile(r"^(?:[-*+]|\d+[.)])\s")


def reflow(markdown: str) -> str:
    """Join hard-wrapped lines into paragraphs and list items, keeping lists, tables and blank lines."""
    out: list[str] = []
    for raw in markdown.split("\n"):
        line = raw.strip()
        if not line:
            if out and out[-1]:
                out.append("")
            continue
        starts_block = bool(_LIST_ITEM.match(line)) or line.startswith(("|", "#", ">"))
        if out and out[-1] and not starts_block and not out[-1].startswith("|"):
            out[-1] += " " + line
        else:
            out.append(line)
    return "\n".join(out).strip()


_WORD = re.compile(r"[^\W\d_]+")
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]+")
_PHRASE_BREAK = re.compile(r"[\n.;:!?()\[\],\"“”]")
RESTORE_MAX_N = 3


def restoration_counts(texts, max_n: int = RESTORE_MAX_N) -> dict[str, dict[str, int]]:
    """Count, for every folded 1–3-word phrase of a corpus, the spellings with diacritics it came from."""
    counts: dict[str, dict[str, int]] = {}
    for text in texts:
        for phrase in _PHRASE_BREAK.split(nfc(text)):
            words = [w.lower() for w in _WORD.findall(phrase)]
            folded = [fold(w) for w in words]
            for n in range(1, max_n + 1):
                for i in range(len(words) - n + 1):
                    key = " ".join(folded[i : i + n])
                    spelled = counts.setdefault(key, {})
                    value = " ".join(words[i : i + n])
                    spelled[value] = spelled.get(value, 0) + 1
    return counts


def restoration_table(texts, max_n: int = RESTORE_MAX_N) -> dict[str, str]:
    """Folded phrase → its most frequent spelling in the corpus (only where diacritics differ)."""
    table = {}
    for key, spelled in restoration_counts(texts, max_n).items():
        best = max(spelled.items(), key=lambda kv: (kv[1], kv[0]))[0]
        if best != key:
            table[key] = best
    return table


def restore_diacritics(text: str, table: dict[str, str], max_n: int = RESTORE_MAX_N) -> str:
    """Put diacritics back into a question typed without any, by longest known phrases of the knowledge base.

    Text that already carries diacritics is returned unchanged: the citizen typed what they meant.
    """
    if has_diacritics(text) or not table:
        return text
    tokens = _TOKEN.findall(nfc(text))
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(max_n, len(tokens) - i), 0, -1):
            window = tokens[i : i + n]
            if not all(_WORD.fullmatch(w) for w in window):
                continue
            key = " ".join(w.lower() for w in window)
            if key in table:
                out.append(table[key])
                i += n
                break
        else:
            out.append(tokens[i])
            i += 1
    return " ".join(out)


_GLUE = frozenset("cua va cho doi voi tai theo trong cac nhung duoc ve hoac la co khong thi den tu".split())


def acronym_table(names, min_words: int = 2, max_words: int = 7) -> dict[str, str]:
    """Acronyms officials write for phrases of procedure names (GPLHX → giấy phép lưu hành xe), most frequent first.

    Learned from the names themselves: every run of 2–7 words gives the acronym of its initials (Đ counts as D).
    """
    counts: dict[str, dict[str, int]] = {}
    for name in names:
        for phrase in _PHRASE_BREAK.split(nfc(name)):
            words = [w.lower() for w in _WORD.findall(phrase)]
            for n in range(min_words, max_words + 1):
                for i in range(len(words) - n + 1):
                    run = words[i : i + n]
                    if fold(run[0]) in _GLUE or fold(run[-1]) in _GLUE:
                        continue  # "… cảnh của công dân" is a slice across words, not a term
                    key = "".join(fold(w)[0] for w in run)
                    spelled = counts.setdefault(key, {})
                    value = " ".join(run)
                    spelled[value] = spelled.get(value, 0) + 1
    table = {}
    for key, spelled in counts.items():
        if len(key) < 3:
            continue
        best, count = max(spelled.items(), key=lambda kv: (kv[1], kv[0]))
        if count >= 2:  # seen once is chance, not usage
            table[key] = best
    return table


_ACRONYM = re.compile(r"\b[A-ZĐ]{3,8}\b")


def acronyms_in(text: str, table: dict[str, str]) -> list[str]:
    """Phrases for the capitalised acronyms of a question that the table knows."""
    out = []
    for token in _ACRONYM.findall(nfc(text)):
        phrase = table.get(fold(token))
        if phrase and phrase not in out:
            out.append(phrase)
    return out
