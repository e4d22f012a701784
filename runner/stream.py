"""Incremental decoder for the simulate-conversation stream: bytes in, frames out.

The stream's framing is not specified by the vendor (docs/real-api.md), so the decoder accepts every
plausible variant without being told which one it faces: one frame per line, each line either a JSON
string literal holding the frame's JSON (double-encoded, the observed form) or a plain JSON object;
``\\n`` or ``\\r\\n`` endings; blank and whitespace-only keep-alive lines; an optional SSE ``data:``
prefix, with SSE comments and ``event:``/``id:``/``retry:`` lines ignored; a UTF-8 BOM at the very
start; and a last line without a newline. It never looks at the Content-Type.

Everything here is pure (no I/O, no clock): the client feeds the chunks httpx yields and stamps
the frames with its own clock, which keeps the decoder trivially testable at every split point.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError
from pydantic_core import from_json

from runner.wire.simulate import Analysis, StreamFrame, TranscriptMessage

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "FrameDecoder",
    "StreamDecodeError",
    "Transcript",
    "decode_frame",
    "decode_stream",
]

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
"""A final frame with a long transcript is a few hundred KiB; 16 MiB only stops runaway input."""

_PREVIEW_BYTES = 200
_BOM = b"\xef\xbb\xbf"
_STRIP = b" \t\r"
_SSE_IGNORED = (b"event:", b"id:", b"retry:")
_OPEN_BRACE = 0x7B  # "{"
_QUOTE = 0x22  # '"'
_SPACE = 0x20  # the last byte of a line ``strip`` leaves alone is above this


class StreamDecodeError(ValueError):
    """A malformed line: the stream cannot be trusted, so the simulation is retried whole.

    ``line`` holds at most the first 200 bytes of the offending line, so a huge bad line is not
    kept alive by the exception. ``frames`` holds the frames the failing ``feed`` call decoded
    before the bad line (they were valid; a client may keep them for diagnostics).
    """

    def __init__(
        self,
        reason: str,
        line: bytes | bytearray = b"",
        *,
        lineno: int | None = None,
        frames: list[StreamFrame] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = bytes(line[:_PREVIEW_BYTES])
        self.line_length = len(line)
        self.lineno = lineno
        self.frames: list[StreamFrame] = frames if frames is not None else []

    def __str__(self) -> str:
        where = f"line {self.lineno}: " if self.lineno is not None else ""
        more = f" ... ({self.line_length} bytes)" if self.line_length > len(self.line) else ""
        return f"{where}{self.reason}: {self.line!r}{more}"


def _validation_reason(exc: ValidationError, double_encoded: bool) -> str:
    """Turn pydantic's report into the one-line reason a human needs to find the fault."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    kind, loc = first["type"], first["loc"]
    content = "JSON string whose content is " if double_encoded else ""
    if not loc:
        if kind == "json_invalid":
            return f"{content}not JSON ({first['msg'].removeprefix('Invalid JSON: ')})"
        if kind == "model_type":
            return f"{content}not a JSON object"
    where = ".".join(str(part) for part in loc) or "frame"
    extra = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"frame does not validate as StreamFrame: {where}: {first['msg']}{extra}"


_validate_json = StreamFrame.__pydantic_validator__.validate_json
"""``StreamFrame.model_validate_json`` minus its Python wrapper: the same Rust call, ~20% less
time per frame on this hot path."""


def _sse_payload(payload: bytes) -> bytes | None:
    """The JSON inside an SSE-style line, or None for a line that carries no frame."""
    if payload[0] == 0x3A:  # ":" an SSE comment, often used as a keep-alive
        return None
    if payload.startswith(b"data:"):
        return payload[5:].lstrip(_STRIP) or None
    if payload.startswith(_SSE_IGNORED):
        return None
    return payload  # not a frame by its first byte: the JSON parser will say what is wrong


def decode_frame(line: bytes) -> StreamFrame | None:
    """Decode one line (without its ``\\n``); None for lines that carry no frame.

    Blank, whitespace-only, SSE comment (``:``) and SSE ``event:``/``id:``/``retry:`` lines
    carry no frame. A ``data:`` prefix (with or without a space) is removed. The remaining
    payload is a JSON string literal (double-encoded frame) or a JSON object.
    """
    line = bytes(line)
    payload: bytes | None = line.strip(_STRIP)
    if not payload:
        return None
    first = payload[0]
    if first != _OPEN_BRACE and first != _QUOTE:
        payload = _sse_payload(payload)
        if payload is None:
            return None
    return _decode_payload(payload, line)


def _decode_payload(payload: bytes, line: bytes) -> StreamFrame:
    """The frame in ``payload`` (a JSON object, or a JSON string literal holding one) of
    ``line``, which the error, if any, quotes."""
    double_encoded = payload[0] == _QUOTE
    try:
        if double_encoded:
            # jiter parses a long, escape-heavy string literal ~5x faster than json.loads, and
            # a payload that opens with a quote parses to a str or not at all.
            return _validate_json(from_json(payload, cache_strings=False))
        return _validate_json(payload)
    except ValidationError as exc:
        raise StreamDecodeError(_validation_reason(exc, double_encoded), line) from None
    except ValueError as exc:  # from_json: the string literal itself is broken
        raise StreamDecodeError(f"not JSON ({exc})", line) from None


class FrameDecoder:
    """Bytes in, frames out: a small state machine that buffers at most one partial line.

    Feed it network chunks in order, then call ``close()`` at end of stream to decode a last
    line that has no newline. Chunk boundaries may fall anywhere, even inside a multi-byte
    UTF-8 character: lines are split on the ``\\n`` byte, which never occurs inside one.

    After a ``StreamDecodeError`` the decoder is failed: ``feed`` and ``close`` raise again,
    so a caller cannot mistake a broken stream for a shorter good one.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        self.frames_decoded = 0
        self.bytes_fed = 0
        self.lines_seen = 0
        self._buf = bytearray()  # the partial last line, never containing b"\n"
        self._closed = False
        self._error: StreamDecodeError | None = None

    def _fail(self, exc: StreamDecodeError, frames: list[StreamFrame]) -> StreamDecodeError:
        exc.lineno = self.lines_seen
        exc.frames = frames
        self._error = exc
        self._buf = bytearray()  # drop whatever is left: the stream is not trusted any more
        return exc

    def _check_usable(self) -> None:
        if self._error is not None:
            err = self._error
            raise StreamDecodeError(
                f"decoder already failed ({err.reason})", err.line, lineno=err.lineno
            )
        if self._closed:
            raise StreamDecodeError("feed() after close()")

    def _line(self, line: bytes, frames: list[StreamFrame]) -> None:
        self.lines_seen += 1
        if len(line) > self.max_line_bytes:
            raise self._fail(
                StreamDecodeError(f"line longer than {self.max_line_bytes} bytes", line), frames
            )
        if self.lines_seen == 1 and line.startswith(_BOM):
            line = line[3:]
        try:
            frame = decode_frame(line)
        except StreamDecodeError as exc:
            raise self._fail(exc, frames) from None
        if frame is not None:
            self.frames_decoded += 1
            frames.append(frame)

    def feed(self, data: bytes | bytearray | memoryview) -> list[StreamFrame]:
        """Decode every line completed by ``data``; keep the unfinished tail for later."""
        if self._error is not None or self._closed:
            self._check_usable()
        if type(data) is not bytes:
            data = bytes(data)  # memoryview has no .find; a bytearray's slices would be mutable
        self.bytes_fed += len(data)
        frames: list[StreamFrame] = []
        buf = self._buf
        pos = 0
        if buf:
            nl = data.find(b"\n")
            if nl < 0:
                buf += data
                if len(buf) > self.max_line_bytes:
                    self.lines_seen += 1
                    reason = f"line longer than {self.max_line_bytes} bytes (no newline yet)"
                    raise self._fail(StreamDecodeError(reason, buf), frames)
                return frames
            buf += data[:nl]
            line = bytes(buf)
            buf.clear()
            self._line(line, frames)
            pos = nl + 1
        find = data.find
        max_line = self.max_line_bytes
        while (nl := find(b"\n", pos)) >= 0:
            # The usual line, inline: a frame from its first byte to its last (nothing to
            # strip, no prefix, not too long). Every other line (blank, SSE, a BOM, a trailing
            # space or ``\r``, too long) takes ``_line``; both decode it the same way.
            if (
                pos < nl <= pos + max_line
                and (data[pos] == _QUOTE or data[pos] == _OPEN_BRACE)
                and data[nl - 1] > _SPACE
            ):
                self.lines_seen += 1
                line = data[pos:nl]
                try:
                    frames.append(_decode_payload(line, line))
                except StreamDecodeError as exc:
                    raise self._fail(exc, frames) from None
                self.frames_decoded += 1
            else:
                self._line(data[pos:nl], frames)
            pos = nl + 1
        if pos < len(data):
            buf += data[pos:]
            if len(buf) > self.max_line_bytes:
                self.lines_seen += 1
                reason = f"line longer than {self.max_line_bytes} bytes (no newline yet)"
                raise self._fail(StreamDecodeError(reason, buf), frames)
        return frames

    def close(self) -> list[StreamFrame]:
        """End of stream: decode a trailing line that had no newline. Idempotent."""
        if self._error is not None:
            self._check_usable()
        if self._closed:
            return []
        self._closed = True
        frames: list[StreamFrame] = []
        if self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            self._line(line, frames)
        return frames


def decode_stream(
    chunks: Iterable[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> list[StreamFrame]:
    """Decode a whole stream at once: for tests and for a reply read in one piece."""
    decoder = FrameDecoder(max_line_bytes)
    frames: list[StreamFrame] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    frames.extend(decoder.close())
    return frames


@dataclass
class Transcript:
    """A stream accumulated: messages in order with their arrival times, and the analysis.

    Times are whatever clock the caller uses (the client passes monotonic seconds since the
    request started), so per-message latency and time-to-first-message fall out directly.
    """

    messages: list[TranscriptMessage] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    analysis: Analysis | None = None
    frame_times: list[float] = field(default_factory=list)

    def add(self, frame: StreamFrame, at: float) -> None:
        """Take one frame; a frame may carry messages and an analysis, and a later analysis wins."""
        self.frame_times.append(at)
        new = frame.simulated_conversation
        if new:
            self.messages.extend(new)
            self.arrivals.extend([at] * len(new))
        if frame.analysis is not None:
            self.analysis = frame.analysis

    @property
    def complete(self) -> bool:
        """A stream that ends without an analysis is broken, whatever it delivered before."""
        return self.analysis is not None
