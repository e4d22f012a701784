"""The stream decoder: every framing variant, every split point, and garbage never escapes.

Expected frames are computed independently of the decoder (stdlib ``json`` plus
``StreamFrame.model_validate`` on Python dicts), so a test fails if the decoder loses, reorders,
duplicates or alters a frame.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.stream import FrameDecoder, StreamDecodeError, Transcript, decode_frame, decode_stream
from runner.wire.simulate import StreamFrame, usage_totals

# The three lines of the vendor's example stream (its draft docs), verbatim.
REFERENCE_LINES = [
    rb'"{\"simulated_conversation\":[{\"role\":\"agent\",\"message\":\"Hi, this is Ana from Acme support. How can I help?\",\"tool_calls\":[],\"tool_results\":[],\"time_in_call_secs\":0}],\"analysis\":null}"',  # noqa: E501
    rb'"{\"simulated_conversation\":[{\"role\":\"user\",\"message\":\"My order never arrived.\",\"tool_calls\":[],\"tool_results\":[],\"time_in_call_secs\":0}],\"analysis\":null}"',  # noqa: E501
    rb'"{\"simulated_conversation\":null,\"analysis\":{\"evaluation_criteria_results\":{\"polite\":{\"criteria_id\":\"polite\",\"result\":\"success\",\"rationale\":\"The agent stayed courteous.\"}},\"data_collection_results\":{},\"call_successful\":\"success\",\"transcript_summary\":\"The user reported a missing order...\",\"call_summary_title\":null}}"',  # noqa: E501
]
REFERENCE_FRAMES: list[dict[str, Any]] = [json.loads(json.loads(line)) for line in REFERENCE_LINES]

# Frames with non-ASCII text, so that splits can fall inside multi-byte UTF-8 characters.
UNICODE_FRAMES: list[dict[str, Any]] = [
    {
        "simulated_conversation": [
            {"role": "agent", "message": "Olá — café 😀 日本語", "time_in_call_secs": 1},
            {"role": "user", "message": None, "time_in_call_secs": 2, "x_unknown": {"k": [1]}},
        ],
        "analysis": None,
        "x_frame_extra": "kept",
    },
    {
        "simulated_conversation": [],
        "analysis": {
            "call_successful": "failure",
            "transcript_summary": "Résumé: ✓",
            "call_success_score": 0.25,
        },
    },
]

Encoder = Callable[[dict[str, Any]], bytes]

ENCODERS: dict[str, Encoder] = {
    "double": lambda f: json.dumps(json.dumps(f)).encode(),
    "double_utf8": lambda f: json.dumps(
        json.dumps(f, ensure_ascii=False), ensure_ascii=False
    ).encode(),
    "plain": lambda f: json.dumps(f).encode(),
    "plain_utf8_compact": lambda f: json.dumps(
        f, ensure_ascii=False, separators=(",", ":")
    ).encode(),
    "sse_space_plain": lambda f: b"data: " + json.dumps(f).encode(),
    "sse_nospace_double": lambda f: b"data:" + json.dumps(json.dumps(f)).encode(),
    "sse_space_double_utf8": lambda f: (
        b"data: " + json.dumps(json.dumps(f, ensure_ascii=False), ensure_ascii=False).encode()
    ),
    "padded_plain": lambda f: b" \t" + json.dumps(f).encode() + b"  ",
}
TERMINATORS = [b"\n", b"\r\n"]
NOISE_LINES = [
    b"",
    b"   ",
    b"\t \t",
    b": keep-alive",
    b":",
    b"event: message",
    b"id: 7",
    b"retry: 1000",
    b"data:",
    b"data: ",
]
BOM = b"\xef\xbb\xbf"


def expected(frames: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [StreamFrame.model_validate(f).model_dump() for f in frames]


def dumped(frames: Iterable[StreamFrame]) -> list[dict[str, Any]]:
    return [f.model_dump() for f in frames]


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def mixed_stream(frames: list[dict[str, Any]]) -> bytes:
    """Every encoding, both terminators and all noise lines, a BOM, no final newline."""
    parts = [BOM]
    encoders = itertools.cycle(ENCODERS.values())
    terminators = itertools.cycle(TERMINATORS)
    noise = itertools.cycle(NOISE_LINES)
    for i, frame in enumerate(frames):
        for _ in range(2):
            parts.append(next(noise) + next(terminators))
        parts.append(next(encoders)(frame))
        if i < len(frames) - 1:
            parts.append(next(terminators))
    return b"".join(parts)


MIXED_FRAMES = REFERENCE_FRAMES + UNICODE_FRAMES
MIXED = mixed_stream(MIXED_FRAMES)


# ---------------------------------------------------------------------------- framing variants


def test_reference_example_decodes_to_two_messages_and_the_analysis() -> None:
    frames = decode_stream([b"\n".join(REFERENCE_LINES) + b"\n"])
    assert dumped(frames) == expected(REFERENCE_FRAMES)
    transcript = Transcript()
    for i, frame in enumerate(frames):
        transcript.add(frame, float(i))
    assert [m.role for m in transcript.messages] == ["agent", "user"]
    assert transcript.messages[1].message == "My order never arrived."
    assert transcript.analysis is not None
    assert transcript.analysis.call_successful == "success"
    assert transcript.analysis.evaluation_criteria_results["polite"].result == "success"


@pytest.mark.parametrize("terminator", TERMINATORS, ids=["lf", "crlf"])
@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_each_encoding_alone(encoding: str, terminator: bytes) -> None:
    encode = ENCODERS[encoding]
    data = b"".join(encode(f) + terminator for f in MIXED_FRAMES)
    assert dumped(decode_stream([data])) == expected(MIXED_FRAMES)


@pytest.mark.parametrize("noise", NOISE_LINES)
def test_each_noise_line_is_skipped(noise: bytes) -> None:
    assert decode_frame(noise) is None
    data = noise + b"\n" + REFERENCE_LINES[0] + b"\n" + noise + b"\r\n" + REFERENCE_LINES[2]
    assert dumped(decode_stream([data])) == expected([REFERENCE_FRAMES[0], REFERENCE_FRAMES[2]])


def test_mixed_stream_with_bom_and_no_final_newline() -> None:
    assert MIXED.startswith(BOM)
    assert not MIXED.endswith(b"\n")
    assert dumped(decode_stream([MIXED])) == expected(MIXED_FRAMES)


def test_bom_only_at_the_start_and_split_across_chunks() -> None:
    data = BOM + REFERENCE_LINES[0] + b"\n"
    assert dumped(decode_stream([data[:1], data[1:2], data[2:]])) == expected(REFERENCE_FRAMES[:1])
    with pytest.raises(StreamDecodeError):
        decode_stream([REFERENCE_LINES[0] + b"\n" + BOM + REFERENCE_LINES[1] + b"\n"])


def test_last_line_without_newline_needs_close() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(REFERENCE_LINES[2]) == []
    frames = decoder.close()
    assert dumped(frames) == expected(REFERENCE_FRAMES[2:])
    assert decoder.close() == []  # idempotent
    with pytest.raises(StreamDecodeError, match="after close"):
        decoder.feed(b"\n")


def test_unknown_keys_are_kept() -> None:
    (frame,) = decode_stream([ENCODERS["double_utf8"](UNICODE_FRAMES[0])])
    assert frame.model_extra == {"x_frame_extra": "kept"}
    assert frame.simulated_conversation is not None
    assert frame.simulated_conversation[1].model_extra == {"x_unknown": {"k": [1]}}


def test_llm_usage_is_validated_summed_and_keeps_unknown_keys() -> None:
    usage = {
        "model_usage": {
            "gpt-4o": {
                "input": {"tokens": 100, "price": 0.5, "x_new": 1},
                "input_cache_read": {"tokens": 20, "price": 0.01},
                "output_total": {"tokens": 7, "price": 0.25},
            },
            "gemini-2.5-flash": {"input": None, "output_total": {"tokens": 3}},
        },
        "x_usage_extra": True,
    }
    message = {"role": "agent", "time_in_call_secs": 1, "message": "Hi", "llm_usage": usage}
    (frame,) = decode_stream([json.dumps({"simulated_conversation": [message]}).encode()])
    assert frame.simulated_conversation is not None
    parsed = frame.simulated_conversation[0].llm_usage
    assert parsed == usage  # unknown keys kept at every level
    assert usage_totals(parsed) == (120, 10, 0.76)
    assert usage_totals(None) == (0, 0, 0.0)
    bad = {**message, "llm_usage": {"model_usage": {"m": {"input": {"tokens": "many"}}}}}
    with pytest.raises(StreamDecodeError, match=r"llm_usage\.model_usage\.m\.input\.tokens"):
        decode_stream([json.dumps({"simulated_conversation": [bad]}).encode()])


@pytest.mark.parametrize("conversation", [None, [], "absent"])
def test_final_frame_variants(conversation: list[Any] | str | None) -> None:
    final: dict[str, Any] = {"analysis": REFERENCE_FRAMES[2]["analysis"]}
    if conversation != "absent":
        final["simulated_conversation"] = conversation
    for encode in ENCODERS.values():
        (frame,) = decode_stream([encode(final) + b"\n"])
        assert frame.analysis is not None
        assert frame.analysis.transcript_summary == final["analysis"]["transcript_summary"]
        assert not frame.simulated_conversation
        transcript = Transcript()
        transcript.add(frame, 1.5)
        assert transcript.messages == [] and transcript.complete


def test_counters_and_memoryview_input() -> None:
    decoder = FrameDecoder()
    frames = decoder.feed(memoryview(MIXED)) + decoder.close()  # type: ignore[arg-type]
    assert decoder.frames_decoded == len(frames) == len(MIXED_FRAMES)
    assert decoder.bytes_fed == len(MIXED)


# ---------------------------------------------------------------------------- split points


def test_every_single_split_point() -> None:
    want = expected(MIXED_FRAMES)
    for cut in range(len(MIXED) + 1):
        assert dumped(decode_stream(split_at(MIXED, [cut]))) == want, cut


def test_one_byte_chunks() -> None:
    decoder = FrameDecoder()
    frames = [f for i in range(len(MIXED)) for f in decoder.feed(MIXED[i : i + 1])]
    assert dumped(frames + decoder.close()) == expected(MIXED_FRAMES)


def test_every_pair_of_split_points_on_a_short_stream() -> None:
    frames: list[dict[str, Any]] = [
        {"simulated_conversation": [{"role": "user", "message": "é😀", "time_in_call_secs": 0}]},
        {"analysis": {"call_successful": "unknown", "transcript_summary": "ü"}},
    ]
    data = (
        BOM
        + ENCODERS["double_utf8"](frames[0])
        + b"\r\n: ping\n"
        + ENCODERS["sse_space_plain"](frames[1])
    )
    want = expected(frames)
    for a, b in itertools.combinations_with_replacement(range(len(data) + 1), 2):
        assert dumped(decode_stream(split_at(data, [a, b]))) == want, (a, b)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "not JSON"),
        (b"data: {oops", "not JSON"),
        (b'"unterminated', "not JSON"),
        (b'"{\\"a\\": 1} trailing"', "JSON string whose content is not JSON"),
        (b'"not json inside"', "JSON string whose content is not JSON"),
        (b'"[1, 2]"', "JSON string whose content is not a JSON object"),
        (json.dumps(json.dumps(json.dumps({"a": 1}))).encode(), "content is not a JSON object"),
        (b"[1, 2]", "not a JSON object"),
        (b"42", "not a JSON object"),
        (b"\xff\xfe{}", "not JSON"),
        (b'"\xff"', "not JSON"),
        (b'"\\ud800"', "not JSON"),  # a lone surrogate cannot be a frame's text
        (
            b'{"simulated_conversation": [{"role": "robot", "time_in_call_secs": 0}]}',
            "simulated_conversation.0.role",
        ),
        (b'"{\\"simulated_conversation\\": 3}"', "does not validate as StreamFrame"),
        (
            b'{"analysis": {"call_successful": "yes", "transcript_summary": ""}}',
            "analysis.call_successful",
        ),
        (b'{"analysis": {}}', "(+1 more)"),
    ],
)
def test_malformed_line_raises_with_a_useful_message(line: bytes, reason: str) -> None:
    with pytest.raises(StreamDecodeError) as info:
        decode_frame(line)
    assert reason in info.value.reason
    assert info.value.line == line
    assert reason in str(info.value) and repr(line) in str(info.value)
    # The decoder's inline path for a whole line in one chunk gives the very same error.
    with pytest.raises(StreamDecodeError) as fed:
        FrameDecoder().feed(line + b"\n")
    assert (fed.value.reason, fed.value.line, fed.value.lineno) == (info.value.reason, line, 1)


def test_decoder_error_names_the_line_and_keeps_earlier_frames() -> None:
    data = REFERENCE_LINES[0] + b"\n\n: ping\n" + b"garbage\n" + REFERENCE_LINES[1] + b"\n"
    decoder = FrameDecoder()
    with pytest.raises(StreamDecodeError) as info:
        decoder.feed(data)
    err = info.value
    assert err.lineno == 4
    assert str(err).startswith("line 4: not JSON")
    assert dumped(err.frames) == expected(REFERENCE_FRAMES[:1])
    # A failed decoder stays failed: a broken stream cannot pass for a shorter good one.
    with pytest.raises(StreamDecodeError, match="already failed"):
        decoder.feed(b"")
    with pytest.raises(StreamDecodeError, match="already failed"):
        decoder.close()


def test_long_bad_line_is_truncated_in_the_error() -> None:
    line = b"x" * 5000
    with pytest.raises(StreamDecodeError) as info:
        decode_stream([line + b"\n"])
    assert len(info.value.line) == 200
    assert "5000 bytes" in str(info.value)
    assert len(str(info.value)) < 400


def test_over_long_line_limit() -> None:
    limit = 120
    line = json.dumps({"analysis": {"call_successful": "success", "transcript_summary": ""}})
    exact = line.encode().ljust(limit)  # trailing spaces are part of the line
    assert len(exact) == limit
    assert len(decode_stream([exact + b"\n"], max_line_bytes=limit)) == 1
    with pytest.raises(StreamDecodeError, match="longer than 120"):
        decode_stream([exact + b" \n"], max_line_bytes=limit)
    # Without a newline the decoder gives up as soon as the limit is passed, not at the end.
    decoder = FrameDecoder(max_line_bytes=limit)
    with pytest.raises(StreamDecodeError, match="longer than 120") as info:
        for _ in range(10 * limit):
            decoder.feed(b" ")
    assert decoder.bytes_fed == limit + 1
    assert info.value.lineno == 1
    # Complete lines before the long partial one are still decoded first.
    decoder = FrameDecoder(max_line_bytes=limit)
    with pytest.raises(StreamDecodeError) as info:
        decoder.feed(exact + b"\n" + b"y" * (limit + 1))
    assert info.value.lineno == 2 and len(info.value.frames) == 1


# ---------------------------------------------------------------------------- Transcript


def test_transcript_accumulates_messages_with_arrival_times() -> None:
    frames = decode_stream([MIXED])
    transcript = Transcript()
    for i, frame in enumerate(frames):
        transcript.add(frame, 0.5 * i)
    assert [m.message for m in transcript.messages] == [
        m["message"] for f in MIXED_FRAMES for m in f.get("simulated_conversation") or []
    ]
    assert transcript.arrivals == [0.0, 0.5, 1.5, 1.5]
    assert transcript.frame_times == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert transcript.analysis is not None
    assert transcript.analysis.call_successful == "failure"  # the later of the two analyses


def test_transcript_frame_with_messages_and_analysis_keeps_both() -> None:
    both = StreamFrame.model_validate(
        {
            "simulated_conversation": REFERENCE_FRAMES[0]["simulated_conversation"],
            "analysis": REFERENCE_FRAMES[2]["analysis"],
        }
    )
    transcript = Transcript()
    assert not transcript.complete
    transcript.add(both, 3.0)
    assert len(transcript.messages) == 1 and transcript.arrivals == [3.0]
    assert transcript.complete
    transcript.add(StreamFrame(), 4.0)  # an empty frame changes nothing but the frame times
    assert transcript.analysis == both.analysis and transcript.frame_times == [3.0, 4.0]


# ---------------------------------------------------------------------------- properties

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
extras = st.dictionaries(st.text(max_size=6).map(lambda k: "x_" + k), json_values, max_size=2)
results = st.sampled_from(["success", "failure", "unknown"])
tool_calls = st.fixed_dictionaries(
    {
        "request_id": st.text(max_size=5),
        "tool_name": st.text(max_size=5),
        "params_as_json": st.text(max_size=10),
        "tool_has_been_called": st.booleans(),
    }
)
messages = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "agent"]), "time_in_call_secs": st.integers(0, 10**6)},
        optional={
            "message": st.none() | st.text(max_size=30),
            "tool_calls": st.lists(tool_calls, max_size=2),
            "interrupted": st.booleans(),
        },
    ),
    extras,
)
criteria = st.builds(
    lambda cid, result, why: {"criteria_id": cid, "result": result, "rationale": why},
    st.text(max_size=5),
    results,
    st.text(max_size=10),
)
analyses = st.fixed_dictionaries(
    {"call_successful": results, "transcript_summary": st.text(max_size=30)},
    optional={
        "evaluation_criteria_results": st.dictionaries(st.text(max_size=5), criteria, max_size=2),
        "call_summary_title": st.none() | st.text(max_size=10),
        "call_success_score": st.none() | st.floats(0, 1),
    },
)
message_frames = st.builds(
    lambda msgs, extra: {**extra, "simulated_conversation": msgs, "analysis": None},
    st.lists(messages, min_size=1, max_size=3),
    extras,
)
final_frames = st.builds(
    lambda conv, analysis: (
        {"analysis": analysis}
        if conv == "absent"
        else {"simulated_conversation": conv, "analysis": analysis}
    ),
    st.sampled_from([None, [], "absent"]) | st.lists(messages, min_size=1, max_size=1),
    analyses,
)
streams = st.builds(
    lambda body, last: [*body, last], st.lists(message_frames, max_size=4), final_frames
)


@st.composite
def wire_streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], bytes]:
    """A valid stream: random frames, a random encoding and terminator per line, random noise."""
    frames = draw(streams)
    parts = [BOM] if draw(st.booleans()) else []
    for frame in frames:
        for noise in draw(st.lists(st.sampled_from(NOISE_LINES), max_size=2)):
            parts.append(noise + draw(st.sampled_from(TERMINATORS)))
        parts.append(ENCODERS[draw(st.sampled_from(sorted(ENCODERS)))](frame))
        parts.append(draw(st.sampled_from(TERMINATORS)))
    if draw(st.booleans()):
        parts.pop()  # the last line without its newline
    return frames, b"".join(parts)


def cuts_for(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(data)), max_size=12)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(stream=wire_streams(), data=st.data())
def test_arbitrary_splitting_of_valid_streams(
    stream: tuple[list[dict[str, Any]], bytes], data: st.DataObject
) -> None:
    frames, wire = stream
    cuts = data.draw(cuts_for(wire))
    assert dumped(decode_stream(split_at(wire, cuts))) == expected(frames)


def outcome(chunks: list[bytes], max_line_bytes: int) -> tuple[str, Any]:
    """What a stream decodes to: its frames, or the line number of its first bad line."""
    try:
        return "frames", dumped(decode_stream(chunks, max_line_bytes=max_line_bytes))
    except StreamDecodeError as exc:  # anything else fails the test
        assert exc.lineno is not None and exc.lineno >= 1
        return "error", exc.lineno


@st.composite
def mangled_streams(draw: st.DrawFn) -> bytes:
    """Mostly valid streams with bytes flipped, dropped or inserted: garbage near the real thing."""
    _, wire = draw(wire_streams())
    buf = bytearray(wire)
    for _ in range(draw(st.integers(0, 4))):
        if not buf:
            break
        i = draw(st.integers(0, len(buf) - 1))
        action = draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            buf[i] = draw(st.integers(0, 255))
        elif action == "drop":
            del buf[i]
        else:
            buf[i:i] = draw(st.sampled_from([b"\n", b"\r", b'"', b"\\", b"{", b"\xe2", b"data:"]))
    return bytes(buf)


@PROPERTY
@given(
    wire=st.binary(max_size=300) | mangled_streams(),
    limit=st.sampled_from([16, 200, 16 * 1024 * 1024]),
    data=st.data(),
)
def test_arbitrary_bytes_decode_or_raise_the_same_way_at_any_split(
    wire: bytes, limit: int, data: st.DataObject
) -> None:
    whole = outcome([wire], limit)
    cuts = data.draw(cuts_for(wire))
    assert outcome(split_at(wire, cuts), limit) == whole
