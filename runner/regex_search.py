r"""A regex searched faster, with the very result of ``pattern.search`` (issue 30). Pure.

The assertions search every agent utterance of every finished job with the user's regexes, so
a search's cost is paid per simulation. ``Finder`` wraps a compiled pattern with shortcuts,
each taken only where the pattern's parse tree (the standard library's own parser) proves it
gives the same answer:

- *Ruling out* (``Finder.ruled_out``): a text without what every match needs has no match.
  Two necessary conditions, each checked with a C-speed string operation on ASCII text: a
  literal every match contains (``(?i)\bin transit`` needs ``in transit``: a substring test,
  on the lowered text under IGNORECASE), and a run of at least the pattern's least width of
  characters its matches are made of (``\b(?:\d[ -]?){13,16}\b`` needs 13 characters in a row
  from ``[\d -]``: the text translated to one byte per character, in/out of that alphabet, and
  a substring test). This is the prefiltering of regex engines that decompose a pattern into
  the strings it must contain (Wang et al., *Hyperscan: A Fast Multi-pattern Regex Matcher
  for Modern CPUs*, NSDI 2019), reduced to what a parse proves. A pattern that begins with a
  literal the engine searches for as a string (``refund``) is left out: the engine is as fast.
- *First characters* (``Finder.search``): a pattern without a fixed first character is tried
  by the engine at every position; here the class of characters any match begins with is
  searched first and the pattern tried only there.
- *One search for many texts* (``Finder.maybe_in``): a pattern that reads nothing outside its
  match but the characters beside it can match inside one utterance only if it matches the
  utterances joined by a line break.

Every shortcut is tested against ``pattern.search`` on seeded random texts
(``tests/test_regex_search.py``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any

_FINDER_TRIES = 8
_FINDER_GAP = 8
"""A ``Finder`` tries candidate positions one at a time while they are no denser than one in
``_FINDER_GAP`` characters (after ``_FINDER_TRIES``); denser, the pattern scans the rest."""

_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})
_NOT_LOCAL = frozenset(
    {"ASSERT", "ASSERT_NOT", "ATOMIC_GROUP", "POSSESSIVE_REPEAT", "GROUPREF", "GROUPREF_EXISTS"}
)
_EDGE_FREE_AT = frozenset({"AT_BOUNDARY", "AT_NON_BOUNDARY"})
_CATEGORIES = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


def _parse(pattern: re.Pattern[str]) -> Any:
    """The pattern's parse tree (the standard library's own regex parser)."""
    parser: Any = importlib.import_module("re._parser")
    return parser.parse(pattern.pattern, pattern.flags)


def _name(op: Any) -> str:
    return str(getattr(op, "name", op))


def _char(code: int) -> str:
    return f"\\U{code:08x}"


def _class_items(items: Any) -> list[str] | None:
    """A parsed character class as the parts of a ``[...]`` (None: negated or not known)."""
    out = []
    for op, av in items:
        name = _name(op)
        if name == "LITERAL":
            out.append(_char(av))
        elif name == "RANGE":
            out.append(_char(av[0]) + "-" + _char(av[1]))
        elif name == "CATEGORY" and _name(av) in _CATEGORIES:
            out.append(_CATEGORIES[_name(av)])
        else:
            return None
    return out


def _wrapped(name: str, av: Any) -> tuple[Any, int] | None:
    """The sub-pattern a plain group, atomic group or repeat wraps, and the least number of
    times a match goes through it; None for any other item, and for a group that changes flags
    (read by none of the walks here)."""
    if name == "SUBPATTERN":
        return None if av[1] or av[2] else (av[3], 1)
    if name == "ATOMIC_GROUP":
        return av, 1
    if name in _REPEATS:
        return av[2], av[0]
    return None


def _first_chars(items: Any) -> tuple[list[str], bool] | None:
    """What a match of the parsed ``items`` can begin with: the parts of a character class
    holding every first character of a non-empty match, and whether the items can match
    empty; None when that is not worked out here (any character, a back-reference, flags)."""
    parts: list[str] = []
    for op, av in items:
        name = _name(op)
        if name == "LITERAL":
            return [*parts, _char(av)], False
        if name == "IN":
            chars = _class_items(av)
            return None if chars is None else ([*parts, *chars], False)
        if name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue  # zero-width: the first character comes after it
        inner: tuple[list[str], bool] | None
        if wrapped := _wrapped(name, av):
            inner, least = _first_chars(wrapped[0]), wrapped[1]
        elif name == "BRANCH":
            alternatives = [_first_chars(a) for a in av[1]]
            if any(a is None for a in alternatives):
                return None
            inner = (
                [c for a in alternatives if a for c in a[0]],
                any(a[1] for a in alternatives if a),
            )
            least = 1
        else:
            return None
        if inner is None:
            return None
        parts += inner[0]
        if least > 0 and not inner[1]:
            return parts, False
    return parts, True


def _head(items: Any) -> Any:
    """The parsed pattern's first item, inside plain groups (None: empty)."""
    head = next(iter(items), None)
    while head is not None and _name(head[0]) == "SUBPATTERN" and not (head[1][1] or head[1][2]):
        head = next(iter(head[1][3]), None)
    return head


def _engine_skips(items: Any) -> bool:
    """The regex engine skips to where a match can begin by itself: the pattern (inside plain
    groups) begins with a literal, a class or alternatives, from which it builds a literal
    prefix or a first-character set and scans in C; a loop here would only be slower."""
    head = _head(items)
    return head is not None and _name(head[0]) in ("LITERAL", "IN", "BRANCH")


def _literal_prefix(items: Any, flags: int) -> bool:
    """The pattern begins with a literal the engine searches for as a string (a character
    with no case variants when case is folded): it finds where a match can begin as fast as
    the tests of ``Finder.ruled_out`` would, so those are left out. A class, alternatives or a
    folded letter first: the engine tests character by character, several times slower."""
    head = _head(items)
    if head is None or _name(head[0]) != "LITERAL":
        return False
    char = chr(head[1])
    return not flags & re.IGNORECASE or char.lower() == char.upper() == char.casefold()


_WIDEST_RANGE = 2048
"""``_at_word_start`` checks a range's characters one by one up to this many."""


def _at_word_start(items: Any, parts: Sequence[str], flags: int) -> bool:
    r"""The parsed pattern begins with ``\b`` and every character of the class ``parts`` is a
    word character (``\w`` under ``flags``), so the boundary is decided by the character
    before. Case folding is not handled (a folded variant may not be a word character)."""
    head = next(iter(items), None)
    if head is None or _name(head[0]) != "AT" or _name(head[1]) != "AT_BOUNDARY":
        return False
    word = re.compile(r"\w", flags & re.ASCII)
    for part in parts:
        if part in (r"\d", r"\w"):
            continue  # a digit is a word character in either mode
        if not part.startswith("\\U"):
            return False  # another category
        lo = int(part[2:10], 16)
        hi = int(part[13:21], 16) if len(part) > 10 else lo
        if hi - lo >= _WIDEST_RANGE:
            return False
        if not all(word.match(chr(code)) for code in range(lo, hi + 1)):
            return False
    return True


def _subpatterns(av: Any) -> list[Any]:
    """The parsed sub-patterns inside an opcode's argument."""
    if not isinstance(av, tuple | list):
        return []
    out = []
    for x in av:
        if hasattr(x, "data") and hasattr(x, "getwidth"):
            out.append(x)
        else:
            out += _subpatterns(x)
    return out


def _local(items: Any) -> bool:
    r"""The parsed pattern reads nothing outside its match but the characters beside it
    (``\b``, ``\B``), and backtracks freely: no anchor, lookaround, back-reference, atomic group
    or possessive repeat."""
    for op, av in items:
        name = _name(op)
        if name in _NOT_LOCAL or (name == "AT" and _name(av) not in _EDGE_FREE_AT):
            return False
        if not all(_local(sub) for sub in _subpatterns(av)):
            return False
    return True


def _needle(items: Any) -> str:
    """The longest run of ASCII literals every match of the parsed ``items`` contains, in the
    order written ("" when none is known): consecutive literals of the top-level sequence, or
    of a plain group or a repeat taken at least once inside it."""
    best, run = "", ""
    for op, av in items:
        name = _name(op)
        if name == "LITERAL" and av < 128:
            run += chr(av)
            continue
        best, run = max(best, run, key=len), ""
        wrapped = _wrapped(name, av)
        if wrapped and wrapped[1] >= 1:
            best = max(best, _needle(wrapped[0]), key=len)
    return max(best, run, key=len)


def _alphabet(items: Any) -> tuple[list[str], int] | None:
    """The parts of a ``[...]`` holding every character a match of the parsed ``items``
    consumes, and the least number it consumes; None when not worked out here (any character,
    a negated class, a lookaround or back-reference, flags changed inside)."""
    parts: list[str] = []
    least = 0
    for op, av in items:
        name = _name(op)
        inner: tuple[list[str], int] | None
        if name == "LITERAL":
            parts.append(_char(av))
            least += 1
            continue
        if name == "IN":
            chars = _class_items(av)
            if chars is None:
                return None
            parts += chars
            least += 1
            continue
        if name == "AT":
            continue  # zero-width, reads the characters beside it only
        if wrapped := _wrapped(name, av):
            inner, times = _alphabet(wrapped[0]), wrapped[1]
        elif name == "BRANCH":
            alternatives = [_alphabet(a) for a in av[1]]
            if any(a is None for a in alternatives):
                return None
            inner = (
                [c for a in alternatives if a for c in a[0]],
                min(a[1] for a in alternatives if a),
            )
            times = 1
        else:
            return None
        if inner is None:
            return None
        parts += inner[0]
        least += inner[1] * times
    return parts, least


_ASCII = [chr(code) for code in range(128)]


class Finder:
    r"""A compiled regex searched faster, with the very result of ``pattern.search``; built once
    at config load. Three shortcuts, each taken only where the pattern's parse proves it safe.
    ``search``: a pattern without a fixed first character (``\b(?:\d[ -]?){13,16}\b``) is tried
    by the regex engine at every position; here the class of characters any match begins with
    is searched first (a plain class, which the engine scans quickly) and the pattern tried
    only there. ``maybe_in``: a pattern that reads nothing outside its match but the characters
    beside it, and backtracks freely, can match inside one utterance only if it matches the
    utterances joined by a line break: one search tells there is no match in any of them.
    ``search`` leaves alone a pattern the engine already skips through (``_engine_skips``).
    Before either, ``ruled_out`` answers "no match" from what every match needs."""

    __slots__ = ("first", "fold", "local", "needle", "pattern", "run", "table")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.first: re.Pattern[str] | None = None
        self.local = False
        self.needle = ""
        self.fold = False
        self.run = b""
        self.table = b""
        try:
            parsed = _parse(pattern)
        except Exception:  # any doubt: the plain search
            return
        self.local = _local(parsed)
        if not _literal_prefix(parsed, pattern.flags):
            self._needs(parsed)
        if _engine_skips(parsed):
            return
        first = _first_chars(parsed)
        if first is None or not first[0] or first[1]:
            return
        # The class under the pattern's own case folding matches exactly the characters its
        # first items match (the compiler folds a literal and a one-character class alike).
        flags = pattern.flags & (re.ASCII | re.IGNORECASE)
        chars = "[" + "".join(first[0]) + "]"
        if not flags & re.IGNORECASE and _at_word_start(parsed, first[0], flags):
            # ``\b`` before a word character holds exactly where the one before is not a word
            # character (or at the start): positions the engine would reject at once.
            chars += rf"(?<!\w{chars})"
        self.first = re.compile(chars, flags)

    def _needs(self, parsed: Any) -> None:
        """What every match needs, for ``ruled_out``. The needle is compared as written, or
        lowered on both sides under IGNORECASE: on ASCII text an ASCII literal then matches
        exactly the characters equal to it lowered. The alphabet is a class under the
        pattern's own flags, so it folds as the pattern's literals and classes do; its table
        is that class read on every ASCII character (1 in, 0 out)."""
        self.fold = bool(self.pattern.flags & re.IGNORECASE)
        needle = _needle(parsed)
        self.needle = needle.lower() if self.fold else needle
        alphabet = _alphabet(parsed)
        if alphabet is None or not alphabet[0] or alphabet[1] < 1:
            return
        parts, least = alphabet
        flags = self.pattern.flags & (re.ASCII | re.IGNORECASE)
        member = re.compile("[" + "".join(parts) + "]", flags).fullmatch
        inside = bytes(1 if member(c) else 0 for c in _ASCII)
        if all(inside):
            return  # every ASCII character: nothing to rule out
        self.table = inside + bytes(128)
        self.run = b"\x01" * least

    def ruled_out(self, text: str) -> bool:
        """True only when ``text`` has no match: it lacks the literal every match contains, or
        any run of the characters matches are made of as long as the shortest match. Decided
        on ASCII text only (other text: False, the search decides)."""
        if not text.isascii():
            return False
        needle = self.needle
        if needle and needle not in (text.lower() if self.fold else text):
            return True
        run = self.run
        return bool(run) and run not in text.encode("ascii").translate(self.table)

    def search(self, text: str) -> re.Match[str] | None:
        """``pattern.search(text)``."""
        if self.ruled_out(text):
            return None
        first = self.first
        if first is None:
            return self.pattern.search(text)
        match = self.pattern.match
        pos = tries = 0
        while tries <= _FINDER_TRIES + pos // _FINDER_GAP:
            candidate = first.search(text, pos)
            if candidate is None:
                return None
            pos = candidate.start()
            found = match(text, pos)
            if found is not None:
                return found
            pos += 1
            tries += 1
        return self.pattern.search(text, pos)  # candidates too dense: the engine's own scan

    def maybe_in(self, joined: str) -> bool:
        """False only when no utterance joined in ``joined`` (``Transcript.joined``) matches."""
        return not self.local or self.search(joined) is not None
