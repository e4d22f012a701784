"""``runner.regex_search``: every shortcut gives the very result of ``pattern.search``."""

from __future__ import annotations

import random
import re

import pytest

from runner.regex_search import Finder, _alphabet, _parse

_FINDER_PATTERNS = [
    r"\b(?:\d[ -]?){13,16}\b",
    r"\d+",
    r"^Hi",
    r"\?$",
    r"\bA-\d+",
    r"\s\w",
    r"[^a-z ]{3}",
    r"(?<=\s)in",
    r"x?",
    r"(?:ab|\d)\d",
    r"(?>\w+\s*)\b",
    r"\W\w",
    r"days\b|transit",
    r"(a)\1",
    r"(?:[ -]?\d){2,}",
    r"\B\d",
    r"(?i)ORDER",
    r"(?x) 3 \s days",
    r"[\u00e9-\u00ff]t",
    r"(?i)3 (business )?days",
    r"(?i)\bk\w",
    r"(?i)\u017f|\u03b9",
    r"(?i)\b\u03b9",
    r"\b\u00e9\w*",
    r"(?a)\b\w+",
    r"\b[0-9]+\b",
    r"\b[a-z]",
    r"\b_?\d",
    r"(?i)in transit",
    r"(?i)\bref(?:und)+ed",
    r"(?:refund|return)ed",
    r"a[^b]c",
    r"(?i)x\u212a",
    r"(?i)\u212a\w",
    r"(?:ab){2,}c?",
    r"\d{3}-\d{2}-\d{4}",
    r"(?i)[a-c]{3}",
    r"(?s)a.b",
]
_FINDER_TEXTS = [
    "",
    "4111 1111 1111 1111 is a card",
    "Hi there, order A-10234 ships in 3 days?",
    "-x",
    "aa ab 12 b3 33 café été",
    "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6",
    "no digits here at all, in transit\nthen more",
    "K \u212a \u017f s \u03b9 x\u0345 \u0399\u039f _7 a_1",
    "arrives in 3 Business DAYS, 3days",
    "\u00e9 \u00e9tude x\u00e9 caf\u00e9s 12ab",
]


def _assert_finder_searches_as_the_pattern(
    pattern: re.Pattern[str], finder: Finder, texts: list[str]
) -> None:
    """The independent computation: the pattern's own search, on each text."""
    for text in texts:
        want, got = pattern.search(text), finder.search(text)
        assert (want and want.span()) == (got and got.span()), (pattern.pattern, text)


def test_finder_finds_what_the_pattern_finds_and_rules_out_only_what_cannot_match() -> None:
    # The independent computation: the pattern's own search, on each text and on each part.
    for source in _FINDER_PATTERNS:
        pattern = re.compile(source)
        finder = Finder(pattern)
        _assert_finder_searches_as_the_pattern(pattern, finder, _FINDER_TEXTS)
        for i in range(len(_FINDER_TEXTS)):
            parts = [t.strip() for t in _FINDER_TEXTS[i:] + _FINDER_TEXTS[:i] if t.strip()]
            if any(pattern.search(p) for p in parts):
                assert finder.maybe_in("\n".join(parts)), (source, parts)


def test_finder_agrees_with_the_pattern_on_random_texts() -> None:
    """Seeded random texts over the characters the shortcuts turn on: digits, separators, word
    and non-word characters, case variants and the characters case folding joins."""
    rng = random.Random(30)
    alphabet = "0123456789 -_.\nabkKsS\u212a\u017f\u03b9\u0345\u0399\u00e9\u00c9"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    texts += ["4111 1111 1111 1111", "x4111111111111111", "3 DAYS", "3 business days"]
    for source in _FINDER_PATTERNS:
        pattern = re.compile(source)
        _assert_finder_searches_as_the_pattern(pattern, Finder(pattern), texts)


def test_finder_takes_its_shortcuts_only_where_the_parse_allows() -> None:
    card = Finder(re.compile(r"\b(?:\d[ -]?){13,16}\b"))
    assert card.first is not None and card.local
    assert not Finder(re.compile(r"^Hi")).local
    assert not Finder(re.compile(r"(?>\w+\s*)\b")).local
    assert Finder(re.compile(r"x?")).first is None  # matches empty: no first character
    assert Finder(re.compile(r".x")).first is None  # any character first
    assert Finder(re.compile(r"(?i)\bx")).first is not None  # the class folds as the pattern
    # a literal, class or alternatives first: the engine skips through the text itself
    for source in (r"refund", r"(?i)x", r"[xz]q", r"(?:ref|cancel)und", r"(a|b)c"):
        assert Finder(re.compile(source)).first is None, source
    # a leading \b before word characters: only positions after a non-word character
    assert card.first is not None and card.first.findall("A-10234 and 5") == ["1", "5"]
    assert "(?<!" not in str(Finder(re.compile(r"(?i)\bk")).first)  # folding: not narrowed
    assert "(?<!" not in str(Finder(re.compile(r"\b\s")).first)  # \s is not a word character


_ASCII_ALPHABET = "0123456789 -_.?\nabcdeiknrstuxyABCKNRSTXY"


def _ascii_texts(seed: int) -> list[str]:
    """Seeded random ASCII texts (what ``Finder.ruled_out`` decides on) over the characters the
    patterns above are made of, with the words they need planted in some."""
    rng = random.Random(seed)
    words = ["in transit", "IN Transit", "refunded", "refundunded", "returned", "ababc", "axc"]
    words += ["123-45-6789", "4111 1111 1111 1111", "xk", "XK", "3 business days", "Hi"]
    texts = []
    for _ in range(400):
        chars = [rng.choice(_ASCII_ALPHABET) for _ in range(rng.randint(0, 50))]
        if rng.random() < 0.4:
            chars.insert(rng.randint(0, len(chars)), rng.choice(words))
        texts.append("".join(chars))
    return texts


def test_ruling_out_never_rules_out_a_text_the_pattern_matches() -> None:
    """Soundness, against the pattern's own search on seeded random ASCII texts; and the
    shortcut is taken often enough here to be tested (a pattern that never rules out proves
    nothing)."""
    texts = _ascii_texts(31)
    taken = 0
    for source in _FINDER_PATTERNS:
        pattern = re.compile(source)
        finder = Finder(pattern)
        for text in texts:
            if finder.ruled_out(text):
                assert pattern.search(text) is None, (source, text)
                taken += 1
        _assert_finder_searches_as_the_pattern(pattern, finder, texts)
    assert taken > len(texts)  # many (pattern, text) pairs decided without the engine


def test_what_every_match_needs_is_read_from_the_parse() -> None:
    card = Finder(re.compile(r"\b(?:\d[ -]?){13,16}\b"))
    assert card.run == b"\x01" * 13 and not card.needle
    said = "Your order A-10234 ships in 3 to 5 days; call 555-0100."
    assert card.ruled_out(said)  # digits, but never 13 in a row of [\d -]
    assert not card.ruled_out("card 4111 1111 1111 1111")
    assert not card.ruled_out("caf\u00e9 4111")  # not ASCII: the search decides
    eta = Finder(re.compile(r"(?i)\b3 (business )?days"))
    assert eta.needle == "days" and eta.fold
    assert eta.ruled_out("arrives in 3 weeks") and not eta.ruled_out("3 DAYS")
    assert Finder(re.compile(r"(?i)in (TRANSIT|the van)")).needle == "in "
    # a literal first that the engine searches as a string: as fast as ruling out, not done
    for source in (r"(?i)3 (business )?days", r"refund", r"(?:refund|return)ed", r"-\d+"):
        assert not Finder(re.compile(source)).needle, source
        assert not Finder(re.compile(source)).run, source
    # (the parser takes the alternatives' common prefix "re" out of the branch)
    assert Finder(re.compile(r"\b(?:refund|return)ed")).needle in ("re", "ed")
    assert Finder(re.compile(r"\ba(?i:bcd)e")).needle == "a"  # flags changed inside: not read
    assert Finder(re.compile(r"\b(?:ab){2,}c?")).needle == "ab"
    assert Finder(re.compile(r"\bx(?:yz)?")).needle == "x"  # an optional group is not needed
    assert not Finder(re.compile(r"(?s)a.b")).run  # any character: no alphabet
    assert not Finder(re.compile(r"a[^b]c")).run  # a negated class: no alphabet
    assert not Finder(re.compile(r"[\w\W]")).run  # every character: nothing to rule out


@pytest.mark.parametrize("source", _FINDER_PATTERNS)
def test_the_least_width_is_the_parsers_own(source: str) -> None:
    """The independent computation: the standard library parser's ``getwidth`` (its least
    width of a match), for every pattern whose alphabet is worked out."""
    parsed = _parse(re.compile(source))
    alphabet = _alphabet(parsed)
    if alphabet is not None:
        assert alphabet[1] == parsed.getwidth()[0], source
