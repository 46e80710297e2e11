"""Personal data out of logs: ID numbers, phone numbers, emails and dossier codes become placeholders."""

from __future__ import annotations

import re

# Placeholders that replace personal data (what kind of thing was there stays visible to staff).
EMAIL, ID12, ID9, PHONE, DOSSIER = "[email]", "[số CCCD]", "[số CMND]", "[số điện thoại]", "[mã hồ sơ]"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# National dossier codes (mã hồ sơ), e.g. 000.00.15.H12-240101-0001, and the short H12.34-240101-0001 forms.
_DOSSIER = re.compile(r"(?<![\w.])(?:\d{3}\.\d{2}\.\d{2}\.)?[A-Z]\d{2}(?:\.\d{1,3})?-\d{6}-\d{3,5}(?![\w])", re.I)
_SEP = r"[ .\-]?"
# 12-digit citizen ID (CCCD / personal identification number), also written in groups: 001 099 012 345.
_ID12 = re.compile(rf"(?<![\d\w])\d(?:{_SEP}\d){{11}}(?![\d\w])")
# Phones: +84 / 0084 / (+84) then 9 digits; or a leading 0 then 9–10 digits; separators may be spaces, dots, dashes.
_PHONE_INTL = re.compile(rf"(?:\(\s*)?(?:\+|\b00)84(?:\s*\))?{_SEP}\(?0?\)?{_SEP}\d(?:{_SEP}\d){{7,9}}(?![\d\w])")
_PHONE_BARE84 = re.compile(rf"(?<![\d\w])84{_SEP}[35789](?:{_SEP}\d){{8}}(?![\d\w])")  # 84912345678: a mobile without the +
_PHONE = re.compile(rf"(?<![\d\w+])\(?0\d{{1,3}}\)?{_SEP}\d(?:{_SEP}\d){{5,8}}(?![\d\w])")
# 9-digit identity card (CMND), also 123 456 789 (not dotted: 100.000.000 is an amount).
_ID9 = re.compile(r"(?<![\d\w.,])\d{3}(?: ?\d{3}){2}(?![\d\w]|[.,]\d)")


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def mask(text: str, keep_dossier_codes: bool = False) -> str:
    """Replace ID numbers, phone numbers, emails (and dossier codes unless kept) by placeholders."""
    text = _EMAIL.sub(EMAIL, text)
    if not keep_dossier_codes:
        text = _DOSSIER.sub(DOSSIER, text)
    text = _PHONE_BARE84.sub(PHONE, _PHONE_INTL.sub(PHONE, text))
    text = _ID12.sub(ID12, text)
    text = _PHONE.sub(lambda m: PHONE if 10 <= _digits(m.group()) <= 11 else m.group(), text)
    return _ID9.sub(ID9, text)
