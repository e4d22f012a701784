"""How the simulated user's and agent's texts are worded (pure): ``{{name}}`` placeholders,
sentences and clauses, persona sentences said in the first person, dynamic variables as text."""

from __future__ import annotations

import json
import re
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_CONNECTOR = re.compile(r"^(?:then|and|also|finally|after that|next|first|lastly),?\s+", re.I)
_IMPERATIVES: list[tuple[str, str, bool]] = [
    # (instruction to the simulated user, what it says instead, whether that is a question);
    # "\x00" stands for the "you" that addresses the agent, kept out of the pronoun swaps.
    (r"(?:ask|inquire|enquire)(?: the agent)? (?:whether|if)", "Could \x00 tell me whether", True),
    (r"(?:ask|inquire|enquire)(?: the agent)? about", "I have a question about", False),
    (r"ask(?: the agent)? to", "Could \x00", True),
    (r"ask(?: the agent)? for", "Could I get", True),
    (r"check (?:whether|if)", "Could \x00 check whether", True),
    (r"(?:ask|inquire|enquire)(?: the agent)?", "I'd like to know", False),
    (r"(?:tell|inform)(?: the agent)?(?: that)?", "", False),
    (r"request", "I'd like to request", False),
    (r"find out", "I'd like to find out", False),
    (r"complain", "I want to complain", False),
]
_PRONOUNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\byou are\b", re.I), "I am"),
    (re.compile(r"\byou're\b", re.I), "I'm"),
    (re.compile(r"\byou've\b", re.I), "I've"),
    (re.compile(r"\byou'll\b", re.I), "I'll"),
    (re.compile(r"\byou'd\b", re.I), "I'd"),
    (re.compile(r"\byourself\b", re.I), "myself"),
    (re.compile(r"\byours\b", re.I), "mine"),
    (re.compile(r"\byour\b", re.I), "my"),
    (re.compile(r"(^|[,;:]\s*|\b(?:and|then|if|when|because|but|so)\s+)you\b", re.I), r"\1I"),
]


def stringify(value: Any) -> str | None:
    """A dynamic variable's value as text; None for values that say nothing."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if text.strip() else None


def substitute(text: str, variables: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip(" .!?")]


def first_person(sentence: str) -> str:
    """Persona sentences are written to the user ("Your order is late", "Ask about X"): say
    them as the user would ("My order is late.", "I have a question about X.")."""
    text = _CONNECTOR.sub("", sentence.strip())
    # "You ask about X" is the instruction "Ask about X", said as the user would.
    text = re.sub(
        r"^you\s+(?=(?:ask|inquire|enquire|request|complain|find out)\b)", "", text, flags=re.I
    )
    question = False
    for pattern, replacement, asks in _IMPERATIVES:
        swapped, count = re.subn(rf"^{pattern}\b", replacement, text, count=1, flags=re.I)
        if count:
            text, question = swapped.strip(), asks
            break
    text = re.sub(r"\bthe agent\b", "\x00", text, flags=re.I)
    for pronoun, replacement in _PRONOUNS:
        text = pronoun.sub(replacement, text)
    # A "you" left over is the user as an object ("help you"): "me".
    text = re.sub(r"\byou\b", "me", text, flags=re.I).replace("\x00", "you")
    text = text.strip()
    if not text:
        return sentence.strip()
    text = text[0].upper() + text[1:]
    if question:
        return text.rstrip(".!") + "?" if not text.endswith("?") else text
    return text if text[-1] in ".!?" else text + "."


def clauses(text: str) -> list[str]:
    """Sentences, split again at "and"/"but"/";" so that each request stands alone."""
    out: list[str] = []
    for sentence in sentences(text):
        parts = re.split(r"\s*;\s*|,?\s+(?:and|but|plus)\s+(?=\w+\s+\w+)", sentence)
        out.extend(p.strip() for p in parts if p and p.strip(" .!?"))
    return out


def lower_first(text: str) -> str:
    """Lower-case the first letter unless it starts the pronoun "I"."""
    if re.match(r"I\b", text):
        return text
    return text[:1].lower() + text[1:]


def article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def text_vars(raw: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in raw.items():
        text = stringify(value)
        if text is not None:
            out[str(key)] = text
    return out
