"""The assertion kinds on hand-made transcripts (``runner.assertions``), edge cases included."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from runner.assertions import (
    QUOTE_CHARS,
    AgentNeverMatches,
    AgentSays,
    FirstAgentMessageWithin,
    MaxTurns,
    ToolCalled,
    ToolCallSeen,
    ToolResultSeen,
    Transcript,
    Turn,
    _literal,
    _quote,
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
    from bench.assertions import client_cpu_ms, measure, outcomes

    for transcripts in ("overhead", "example"):
        figures = measure(jobs=4, rounds=1, transcripts=transcripts)
        assert figures["assertions"] == 5 and figures["us_per_job"] > 0
        assert figures["messages_per_job"] > 3  # real conversations, not empty ones
    # the overhead section's transcripts carry its own five assertions, one of each kind
    from bench.worker import ASSERTIONS

    assert [o.job.assertions[i].id for o in outcomes(1) for i in range(5)] == [
        a["id"] for a in ASSERTIONS
    ]
    rows = [{"section": "overhead", "setup": "runner @10", "cpu_ms_per_sim": 5.0}]
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"rows": rows}))
    assert client_cpu_ms(path) == [(5.0, "runner @10")]
    assert client_cpu_ms(tmp_path / "absent.json") == []


def _reference_reading(turns: list[Turn]) -> dict[str, Any]:
    """What ``Transcript`` reads of a transcript, computed the plain way: one pass per fact,
    straight from the definitions in ``runner.assertions``' docstring."""
    spoken = [
        (i, t.role, t.message.strip()) for i, t in enumerate(turns) if (t.message or "").strip()
    ]
    starts = [s for k, s in enumerate(spoken) if k == 0 or spoken[k - 1][1] != s[1]]
    runs: list[list[tuple[int, str, str]]] = []
    for k, s in enumerate(spoken):
        if s[1] != "agent":
            continue
        if k and spoken[k - 1][1] == "agent" and spoken[k - 1][0] == s[0] - 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    opening = next((s for s in spoken if s[1] == "user"), None)
    answer = opening and next((s for s in spoken if s[0] > opening[0] and s[1] == "agent"), None)
    return {
        "starts": starts,
        "user_turns": sum(1 for s in starts if s[1] == "user"),
        "utterances": [(" ".join(s[2] for s in run), [s[0] for s in run]) for run in runs],
        "opening": opening,
        "answer": answer,
        "calls": [(i, c.tool_name) for i, t in enumerate(turns) for c in t.tool_calls],
        "results": [(i, r.tool_name) for i, t in enumerate(turns) for r in t.tool_results],
    }


def test_one_pass_reads_what_the_definitions_say_on_random_transcripts() -> None:
    """The transcript is read in one pass; the independent computation reads each fact on its
    own (seeded random transcripts: empty and blank texts, runs of one role, tool calls and
    results with and without text, roles other than the two)."""
    rng = random.Random(30)
    for _ in range(400):
        turns = []
        for _ in range(rng.randint(0, 14)):
            text = rng.choice([None, "", "  ", "hi", " ok ", "3 days", "yes\n"])
            calls = (ToolCallSeen(rng.choice("ab"), "{}"),) if rng.random() < 0.15 else ()
            results = (ToolResultSeen(rng.choice("ab"), "x", False),) if rng.random() < 0.15 else ()
            role = rng.choice(["user", "agent", "agent", "system"])
            turns.append(Turn(role, text, None, calls, results))
        want = _reference_reading(turns)
        t = Transcript(turns)
        got = {
            "starts": t.turn_starts,
            "user_turns": t.user_turns,
            "utterances": [(u.text, [i for i, _, _ in u.spans]) for u in t.utterances()],
            "opening": t.opening,
            "answer": t.answer,
            "calls": [(i, c.tool_name) for i, c in t.calls],
            "results": [(i, r.tool_name) for i, r in t.results],
        }
        assert got == want, turns
        for after in range(-1, len(turns)):  # the runs after a message: cut where it sits
            kept = [
                (
                    " ".join(turns[i].message.strip() for i in idx if i > after),
                    [i for i in idx if i > after],
                )  # type: ignore[union-attr]
                for _, idx in want["utterances"]
                if idx[-1] > after
            ]
            fresh = Transcript(turns)  # joined first, then the runs: either order, one answer
            assert fresh.joined(after) == "\n".join(text for text, _ in kept), (turns, after)
            cut = [(u.text, [i for i, _, _ in u.spans]) for u in fresh.utterances(after)]
            assert cut == kept, (turns, after)
            assert len(fresh.said_after(after)) == sum(len(idx) for _, idx in kept)


def test_a_quote_of_a_span_is_the_text_around_it() -> None:
    """The whole text when it is short or the span is all of it; otherwise a window of
    ``QUOTE_CHARS`` characters (or the span, when longer) holding the span, "..." on each side
    that was cut."""
    rng = random.Random(3)
    text = "".join(rng.choice('ab "\\\u00e9') for _ in range(150))
    assert _quote(text) == _quote(text, 0, len(text)) == json.dumps(text, ensure_ascii=False)
    assert _quote(text[:80]) == json.dumps(text[:80], ensure_ascii=False)
    for start, end in [(0, 5), (70, 75), (140, 150), (10, 120), (0, 149)]:
        width = max(QUOTE_CHARS, end - start)
        windows = {
            ("..." if lo else "")
            + json.dumps(text[lo : lo + width], ensure_ascii=False)
            + ("..." if lo + width < len(text) else "")
            for lo in range(max(end - width, 0), min(start, len(text) - width) + 1)
        }
        assert _quote(text, start, end) in windows, (start, end)
