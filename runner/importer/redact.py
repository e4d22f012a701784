"""Masking personal data in everything an import writes: e-mail addresses, phone numbers and
card-like numbers (``--redact``, on by default).

Pure text rules, applied to every string of a scenario before it is written. Card-like numbers
are 13 to 19 digits, grouped or not (the lengths of ISO/IEC 7812 card numbers), and are masked
before phone numbers, whose rule would also match them; a phone number is 8 or more digits with
the separators people write (``+1 415 555 0134``, ``(415) 555-0134``). Shorter digit runs (order
numbers, times, amounts) are kept: they are what a regression scenario is about.
"""

from __future__ import annotations

import re
from typing import Any

EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"
CARD_MASK = "[card]"

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
PHONE = re.compile(r"(?<![\w-])\+?\(?\d(?:[\d ().-]*\d)?(?!\w)")
PHONE_MIN_DIGITS = 8
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    if ISO_DATE.fullmatch(text.strip()) or sum(c.isdigit() for c in text) < PHONE_MIN_DIGITS:
        return text
    return PHONE_MASK


def redact_text(text: str) -> str:
    """``text`` with every e-mail address, card-like number and phone number masked."""
    text = EMAIL.sub(EMAIL_MASK, text)
    text = CARD.sub(CARD_MASK, text)
    return PHONE.sub(_phone, text)


def redact(value: Any) -> Any:
    """Every string inside ``value`` (mappings, lists, keys left alone) redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def find_personal_data(text: str) -> list[str]:
    """What the rules would mask in ``text`` (for tests and the import's own final check)."""
    found = EMAIL.findall(text)
    text = EMAIL.sub(EMAIL_MASK, text)
    found += CARD.findall(text)
    text = CARD.sub(CARD_MASK, text)
    return found + [m.group(0) for m in PHONE.finditer(text) if _phone(m) == PHONE_MASK]
