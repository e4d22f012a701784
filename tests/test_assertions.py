"""The assertion kinds on hand-made transcripts (``runner.assertions``), edge cases included."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from runner.assertions import (
    AgentNeverMatches,
    AgentSays,
    Finder,
    FirstAgentMessageWithin,
    MaxTurns,
    ToolCalled,
    ToolCallSeen,
    ToolResultSeen,
    Turn,
    _literal,
    assertion_rows,
    json_path,
    turns_from_messages,
    turns_from_rows,
)
from runner.wire.simulate import TranscriptMessage

CARD = re.compile(r"\b(?:\d[ -]?){13,16}\b")


def say(index: int, role: str, text: str | None, t: float | None = None, **kw: Any) -> Turn:
    """A message; ``index`` documents its position (each list below is in order from 0)."""
    return Turn(role=role, message=text, time_in_call_secs=t, **kw)


def call(index: int, tool: str, params: dict[str, Any] | str, t: float = 0) -> Turn:
    text = params if isinstance(params, str) else json.dumps(params)
    return Turn("agent", None, t, tool_calls=(ToolCallSeen(tool, text),))


def result(index: int, tool: str, value: str, error: bool = False, t: float = 0) -> Turn:
    return Turn("agent", None, t, tool_results=(ToolResultSeen(tool, value, error),))


REFUND = [
    say(0, "agent", "Hello, how can I help?", 0),
    say(1, "user", "I want a refund for order B-55871.", 3),
    call(2, "lookup_order", {"order_id": "B-55871"}, 4),
    result(3, "lookup_order", '{"status": "shipped", "eta": "3 business days"}', t=4),
    say(4, "agent", "Your order ships in 3 business days.", 5),
    call(5, "issue_refund", {"order_id": "B-55871", "amount": 20, "meta": {"reason": "late"}}, 6),
    result(6, "issue_refund", "refund service down", error=True, t=6),
    say(7, "agent", "Sorry, I could not issue the refund.", 7),
]


# ---------------------------------------------------------------------------- tool_called


def test_tool_called_with_subset_of_arguments() -> None:
    v = ToolCalled("r", "issue_refund", {"order_id": "B-55871"}).evaluate(REFUND)
    assert v.result == "success" and "#5" in v.rationale and "B-55871" in v.rationale


def test_tool_called_an_errored_call_still_counts_as_called() -> None:
    assert ToolCalled("r", "issue_refund").evaluate(REFUND).result == "success"


def test_tool_called_nested_and_json_path_and_number_as_text() -> None:
    nested = {"meta": {"reason": "late"}, "$.amount": "20", "meta.reason": "late"}
    assert ToolCalled("r", "issue_refund", nested).evaluate(REFUND).result == "success"
    wrong = ToolCalled("r", "issue_refund", {"meta": {"reason": "early"}}).evaluate(REFUND)
    assert (
        wrong.result == "failure" and "meta.reason" in wrong.rationale and "#5" in wrong.rationale
    )


def test_tool_called_never_says_which_tools_were() -> None:
    v = ToolCalled("r", "cancel_order").evaluate(REFUND)
    assert v.result == "failure"
    assert v.rationale == "cancel_order was never called (tools called: issue_refund, lookup_order)"
    none = ToolCalled("r", "cancel_order").evaluate([say(0, "agent", "hi")])
    assert none.rationale.endswith("(tools called: none)")


def test_tool_called_twice_the_second_call_matches() -> None:
    turns = [
        call(0, "issue_refund", {"order_id": "A-1"}),
        result(1, "issue_refund", "ok"),
        call(2, "issue_refund", {"order_id": "B-55871"}),
    ]
    v = ToolCalled("r", "issue_refund", {"order_id": "B-55871"}).evaluate(turns)
    assert v.result == "success" and "#2" in v.rationale and "2 calls" in v.rationale
    miss = ToolCalled("r", "issue_refund", {"order_id": "C-9"}).evaluate(turns)
    assert miss.result == "failure"
    assert "called 2x" in miss.rationale and "#0: order_id is" in miss.rationale
    assert "#2: order_id is" in miss.rationale


def test_tool_called_arguments_not_json() -> None:
    v = ToolCalled("r", "t", {"a": 1}).evaluate([call(0, "t", "not json")])
    assert v.result == "failure" and "#0: arguments are not JSON" in v.rationale
    assert ToolCalled("r", "t").evaluate([call(0, "t", "not json")]).result == "success"


def test_tool_called_list_subset_and_missing_key() -> None:
    turns = [call(0, "t", {"items": [{"sku": "a", "n": 1}, {"sku": "b", "n": 2}]})]
    assert ToolCalled("r", "t", {"items": [{"sku": "b"}]}).evaluate(turns).result == "success"
    assert ToolCalled("r", "t", {"$.items[1].n": 2}).evaluate(turns).result == "success"
    assert ToolCalled("r", "t", {"items[5].n": 2}).evaluate(turns).result == "failure"
    missing = ToolCalled("r", "t", {"qty": 2}).evaluate(turns)
    assert missing.result == "failure" and "no qty" in missing.rationale


def test_booleans_match_only_booleans() -> None:
    turns = [call(0, "t", {"flag": True, "n": 1})]
    assert ToolCalled("r", "t", {"flag": True}).evaluate(turns).result == "success"
    assert ToolCalled("r", "t", {"flag": "True"}).evaluate(turns).result == "failure"
    assert ToolCalled("r", "t", {"n": True}).evaluate(turns).result == "failure"


def test_json_path_parsing() -> None:
    assert json_path("$.a.b[0].c") == ["a", "b", 0, "c"]
    assert json_path("a.b") == ["a", "b"]
    assert json_path("$[2]") == [2]
    for bad in ("$", "a..b", "a[x]", ".a"):
        with pytest.raises(ValueError):
            json_path(bad)


# ---------------------------------------------------------------------------- regexes


def test_agent_never_matches_catches_a_number_split_by_an_interruption() -> None:
    turns = [
        say(0, "user", "What card is on file?"),
        say(1, "agent", "It is 4111 1111", interrupted=True),
        say(2, "agent", "1111 1111, shall I charge it?"),
    ]
    v = AgentNeverMatches("c", CARD).evaluate(turns)
    assert v.result == "failure" and "#1+#2" in v.rationale and "4111 1111 1111 1111" in v.rationale
    # the same text said by the user does not count
    user = [say(0, "user", "my card is 4111 1111 1111 1111")]
    assert AgentNeverMatches("c", CARD).evaluate(user).result == "success"


def test_a_user_message_or_tool_turn_ends_an_utterance() -> None:
    split_by_user = [
        say(0, "agent", "It is 4111 1111"),
        say(1, "user", "wait"),
        say(2, "agent", "1111 1111"),
    ]
    assert AgentNeverMatches("c", CARD).evaluate(split_by_user).result == "success"
    split_by_tool = [
        say(0, "agent", "card 4111 1111"),
        call(1, "t", {}),
        say(2, "agent", "1111 1111"),
    ]
    assert AgentNeverMatches("c", CARD).evaluate(split_by_tool).result == "success"


def test_no_agent_turn() -> None:
    turns = [say(0, "user", "Hello?", 0), say(1, "user", "Anyone there?", 5)]
    assert AgentNeverMatches("c", CARD).evaluate(turns).rationale == (
        "no agent message with text: nothing could match"
    )
    says = AgentSays("s", (re.compile("hello", re.I),)).evaluate(turns)
    assert says.result == "failure" and "said nothing" in says.rationale
    first = FirstAgentMessageWithin("f", 2).evaluate(turns)
    assert (
        first.result == "failure"
        and "never answered" in first.rationale
        and "#0" in first.rationale
    )
    assert MaxTurns("m", 1).evaluate(turns).result == "success"  # one user turn in two chunks
    assert ToolCalled("t", "x").evaluate(turns).result == "failure"
    assert FirstAgentMessageWithin("f", 2).evaluate([]).result == "unknown"


def test_agent_says_any_of_a_list_case_insensitive() -> None:
    pats = (re.compile("refund approved", re.I), re.compile("could not issue", re.I))
    v = AgentSays("s", pats).evaluate(REFUND)
    assert v.result == "success" and "#7" in v.rationale and "'could not issue'" in v.rationale
    upper = AgentSays("s", (re.compile("YOUR ORDER SHIPS", re.I),)).evaluate(REFUND)
    assert upper.result == "success" and "#4" in upper.rationale


def test_agent_says_after_tool_only_counts_later_messages() -> None:
    eta = (re.compile("3 (business )?days", re.I),)
    assert AgentSays("s", eta, after_tool="lookup_order").evaluate(REFUND).result == "success"
    late = AgentSays("s", eta, after_tool="issue_refund").evaluate(REFUND)
    assert late.result == "failure"
    assert "after issue_refund's result at #6 never said" in late.rationale
    never = AgentSays("s", eta, after_tool="cancel_order").evaluate(REFUND)
    assert never.result == "failure" and "no result of cancel_order" in never.rationale


def test_agent_says_after_a_tool_called_twice_starts_at_its_first_result() -> None:
    turns = [
        call(0, "lookup", {}),
        result(1, "lookup", "x"),
        say(2, "agent", "It ships Monday."),
        call(3, "lookup", {}),
        result(4, "lookup", "y"),
        say(5, "agent", "Done."),
    ]
    v = AgentSays("s", (re.compile("monday", re.I),), after_tool="lookup").evaluate(turns)
    assert v.result == "success" and "#2" in v.rationale


def test_long_quotes_are_cut_around_the_match() -> None:
    text = "x" * 200 + " secret 4111111111111111 " + "y" * 200
    v = AgentNeverMatches("c", CARD).evaluate([say(0, "agent", text)])
    assert "4111111111111111" in v.rationale and len(v.rationale) < 200
    assert '..."' in v.rationale and '"...' in v.rationale


@pytest.mark.parametrize(
    "text",
    ["plain", 'quote " and \\ back', "ctl \x00\x1f\x7f\n\t", "é 日本 \u2028 </s>", "\ud800 lone"],
)
def test_quotes_are_the_standard_json_literal(text: str) -> None:
    """Rationales quote text as ``json.dumps(..., ensure_ascii=False)`` writes it, whichever
    encoder makes the literal (a lone surrogate included)."""
    assert _literal(text) == json.dumps(text, ensure_ascii=False)


# ---------------------------------------------------------------------------- turns and timing


def test_max_turns_counts_spoken_turns_not_chunks_or_tool_messages() -> None:
    v = MaxTurns("m", 4).evaluate(REFUND)  # agent, user, agent(#4 ... #7 with tools between)
    assert v.result == "success" and v.rationale.startswith("3 spoken turns (user 1, agent 2)")
    long = [say(i, "user" if i % 2 else "agent", f"line {i}") for i in range(6)]
    over = MaxTurns("m", 4).evaluate(long)
    assert over.result == "failure"
    assert "6 spoken turns" in over.rationale and "turn 5 starts at #4" in over.rationale
    assert MaxTurns("m", 6).evaluate(long).result == "success"


def test_first_agent_message_after_the_users_first_message() -> None:
    ok = FirstAgentMessageWithin("f", 2).evaluate(REFUND)  # user #1 at 3s, agent #4 at 5s
    assert ok.result == "success" and "#4 2s after the user's #1" in ok.rationale
    slow = FirstAgentMessageWithin("f", 1.5).evaluate(REFUND)
    assert slow.result == "failure" and "later than 1.5s" in slow.rationale


def test_missing_timing_is_unknown_and_says_why() -> None:
    turns = [say(0, "user", "hi", None), say(1, "agent", "hello", 1)]
    v = FirstAgentMessageWithin("f", 2).evaluate(turns)
    assert v.result == "unknown" and "no time_in_call_secs recorded for #0" in v.rationale


# ---------------------------------------------------------------------------- sources of turns


def _messages() -> list[TranscriptMessage]:
    return [
        TranscriptMessage(role="user", time_in_call_secs=0, message="refund B-55871"),
        TranscriptMessage.model_validate(
            {
                "role": "agent",
                "time_in_call_secs": 1,
                "tool_calls": [
                    {
                        "request_id": "r1",
                        "tool_name": "issue_refund",
                        "params_as_json": '{"order_id": "B-55871"}',
                        "tool_has_been_called": True,
                    }
                ],
            }
        ),
        TranscriptMessage(role="agent", time_in_call_secs=2, message="Refund approved."),
    ]


def test_turns_from_messages_and_from_stored_rows_agree() -> None:
    from_wire = [
        Turn(
            m.role,
            m.message,
            m.time_in_call_secs,
            tuple(ToolCallSeen(c.tool_name, c.params_as_json) for c in m.tool_calls),
            (),
            m.interrupted,
        )
        for m in _messages()
    ]
    rows = [
        {
            "index": i,
            "role": m.role,
            "message": m.message,
            "time_in_call_secs": m.time_in_call_secs,
            "tool_calls": [c.model_dump() for c in m.tool_calls] or None,
            "tool_results": None,
            "interrupted": m.interrupted,
        }
        for i, m in enumerate(_messages())
    ]
    assert turns_from_rows(reversed(rows)) == from_wire
    kinds = [
        ToolCalled("r", "issue_refund", {"order_id": "B-55871"}),
        AgentSays("s", (re.compile("approved", re.I),)),
        MaxTurns("m", 1),
        FirstAgentMessageWithin("f", 1),
    ]
    for kind in kinds:  # the wire's messages and the stored rows give the same verdicts
        assert kind.evaluate(_messages()) == kind.evaluate(turns_from_rows(rows))
    assert ToolCalled("r", "issue_refund", {"order_id": "B-55871"}).evaluate(from_wire).result == (
        "success"
    )


def test_assertion_rows_are_criteria_rows() -> None:
    checks = [ToolCalled("refund_called", "issue_refund"), MaxTurns("short", 1)]
    rows = assertion_rows("k1", turns_from_messages(_messages()), checks)
    assert [(r["criterion_id"], r["result"], r["source"]) for r in rows] == [
        ("refund_called", "success", "assert"),
        ("short", "failure", "assert"),
    ]
    from runner.schema import CRITERIA

    assert all(set(r) == set(CRITERIA.schema.names()) for r in rows)


# ---------------------------------------------------------------------------- agreement


def test_agreement_with_the_judged_criterion_counts_by_hand() -> None:
    import polars as pl

    from runner.assertions import agreement

    pairs = {  # job: (assertion, judge)
        "j1": ("success", "success"),
        "j2": ("failure", "failure"),
        "j3": ("failure", "success"),  # the judge let it through
        "j4": ("success", "failure"),
        "j5": ("unknown", "success"),  # not compared
        "j6": ("success", None),  # no judged row: not a shared job
    }
    rows = []
    for job, (mine, judge) in pairs.items():
        rows.append(
            {"job_key": job, "criterion_id": "no_approval", "result": mine, "source": "assert"}
        )
        if judge:
            rows.append(
                {"job_key": job, "criterion_id": "honest", "result": judge, "source": "extra"}
            )
    # an assertion row that shares the judged criterion's id is not the judge's
    rows.append(
        {"job_key": "j1", "criterion_id": "honest", "result": "failure", "source": "assert"}
    )
    (a,) = agreement(pl.DataFrame(rows), {"no_approval": "honest"})
    assert (a.jobs, a.compared, a.agree, a.assert_only, a.judge_only) == (6 - 1, 4, 2, 1, 1)
    assert a.rate == 0.5
    old = pl.DataFrame(rows).drop("source")  # no source column: every row is the judge's
    (none,) = agreement(old, {"no_approval": "honest"})
    assert none.jobs == 0 and none.rate is None


def test_the_benchmark_runs_at_a_toy_size(tmp_path: Path) -> None:
    from bench.assertions import client_cpu_ms, measure

    figures = measure(jobs=4, rounds=1)
    assert figures["assertions"] == 5 and figures["us_per_job"] > 0
    assert figures["messages_per_job"] > 3  # real conversations, not empty ones
    rows = [{"section": "overhead", "setup": "runner @10", "cpu_ms_per_sim": 5.0}]
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"rows": rows}))
    assert client_cpu_ms(path) == [(5.0, "runner @10")]
    assert client_cpu_ms(tmp_path / "absent.json") == []


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
