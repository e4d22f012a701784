"""The journal: every finished job is on disk at once, and a later session folds what a killed
one left into the parts it would have become, exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_store import batch, err, ok, writer

from runner.journal import JOURNAL, JournaledParts, decode_rows, encode_rows, read_segment, recover
from runner.outcome import Batch
from runner.schema import TABLES
from runner.store import StoreError, done_job_keys, load_run


def journal_of(run_dir: Path, *outcomes: object, session: str = "s1") -> JournaledParts:
    sink = JournaledParts(writer(run_dir, session))
    for outcome in outcomes:
        sink.add(outcome)  # type: ignore[arg-type]
    return sink


def test_a_journal_line_holds_exactly_the_rows_of_its_job() -> None:
    original = batch(ok(0), err(1), ok(2, "s2", at=5))
    again = Batch()
    for outcome in (ok(0), err(1), ok(2, "s2", at=5)):
        one = Batch()
        sizes = one.sizes()
        one.add(outcome)
        again.extend(decode_rows(encode_rows(one.since(sizes))))
    assert again.jobs == original.jobs == 3
    for table in TABLES:
        assert again.rows(table.name) == original.rows(table.name), table.name


def test_each_job_is_in_the_segment_the_moment_it_is_added(tmp_path: Path) -> None:
    sink = journal_of(tmp_path, ok(0))
    (segment,) = (tmp_path / JOURNAL).iterdir()
    assert read_segment(segment)[1].rows("jobs") == batch(ok(0)).rows("jobs")
    sink.add(err(1))
    axes, journaled = read_segment(segment)
    assert axes == ("language",) and journaled.jobs == 2
    sink.close()


def test_a_written_batch_leaves_no_segment_and_the_next_starts_one(tmp_path: Path) -> None:
    sink = journal_of(tmp_path, ok(0), ok(1))
    sealed = sink.seal()
    assert sealed is not None
    sink.add(ok(2))  # after the seal: a new segment, for the next part
    sink.write(sealed)
    (left,) = (tmp_path / JOURNAL).iterdir()
    assert left.name == "s1-000002.jsonl"
    assert done_job_keys(tmp_path) == {"key0", "key1"}
    sink.close()


def test_sync_fsyncs_the_open_segment_only_when_lines_came_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr("runner.journal.os.fsync", synced.append)
    sink = journal_of(tmp_path, ok(0))
    sink.sync()
    sink.sync()  # nothing new: no second fsync
    assert len(synced) == 1
    sink.add(ok(1))
    sink.sync()
    assert len(synced) == 2
    sink.seal()  # sealed lines become parts (fsync'd then); the next segment is not open yet
    sink.sync()
    assert len(synced) == 2
    sink.close()


def test_recover_folds_what_a_killed_session_journaled(tmp_path: Path) -> None:
    journal_of(tmp_path, ok(0), err(1), ok(2)).close()  # killed before any flush
    assert done_job_keys(tmp_path) == set()
    assert recover(tmp_path) == 3
    assert list((tmp_path / JOURNAL).iterdir()) == []
    run = load_run(tmp_path)
    assert sorted(run.jobs["job_key"]) == ["key0", "key1", "key2"]
    assert run.messages.height == 2 * 3 and set(run.attempts["run_id"]) == {"s1"}
    assert recover(tmp_path) == 0  # idempotent


def test_a_segment_whose_part_was_committed_is_only_removed(tmp_path: Path) -> None:
    sink = journal_of(tmp_path, ok(0), ok(1))
    sealed = sink.seal()
    assert sealed is not None and sealed.segment is not None
    sink.writer.write(sealed.batch, seq=sealed.seq)  # killed between the part and the unlink
    assert sealed.segment.exists()
    assert recover(tmp_path) == 0
    assert not sealed.segment.exists()
    assert load_run(tmp_path).jobs.height == 2


def test_a_line_cut_short_by_a_kill_is_no_job(tmp_path: Path) -> None:
    journal_of(tmp_path, ok(0), ok(1)).close()
    (segment,) = (tmp_path / JOURNAL).iterdir()
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 40])  # the second job's line, half written
    assert recover(tmp_path) == 1
    assert list(load_run(tmp_path).jobs["job_key"]) == ["key0"]


def test_damage_inside_a_segment_is_an_error_not_a_silent_loss(tmp_path: Path) -> None:
    journal_of(tmp_path, ok(0), ok(1)).close()
    (segment,) = (tmp_path / JOURNAL).iterdir()
    lines = segment.read_bytes().split(b"\n")
    lines[1] = b"{not json"
    segment.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreError, match="damaged journal"):
        recover(tmp_path)
    assert segment.exists()  # kept for a person to look at
