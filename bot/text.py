"""Vietnamese text normalisation: NFC, tone-mark normalisation, cleaning and diacritic folding."""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

MAX_QUESTION_CHARS = 1000

_TAG = re.compile(r"<[^>\n]{0,200}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
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
    text = _CONTROL.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    if limit is not None and len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        text = text[: cut if cut > limit // 2 else limit]
    return text


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


def lexical_form(text: str) -> str:
    """Folded syllables joined by spaces: the text the full-text index stores and searches."""
    return " ".join(syllables(text))
