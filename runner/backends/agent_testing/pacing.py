"""When to poll an invocation next (pure).

Polls back off while nothing has finished, then follow the finish rate at a bounded cost per
result; a later session sleeps until about the shortest run-tests -> finished run an earlier
one saw (``invocations.TIMING_FILE``) before its first poll.
"""

from __future__ import annotations

from runner.config import AgentTestingConfig

BACKOFF = 1.5
"""Growth of the interval between polls while no run has finished."""
RATE_POLLS = 4
"""The finish rate is measured over this many intervals between the last polls."""


def finish_rate(done_counts: list[tuple[float, int]], span: float) -> float:
    """Runs finished per second between the oldest and the newest of (time, finished) polls,
    over at most the last ``span`` seconds: the first runs to finish after a long wait are
    counted as finishing within ``span``, not spread over the wait. 0 before two polls."""
    if len(done_counts) < 2:
        return 0.0
    (t0, n0), (t1, n1) = done_counts[0], done_counts[-1]
    elapsed = min(t1 - t0, span)
    return (n1 - n0) / elapsed if elapsed > 0 else 0.0


def next_delay(
    o: AgentTestingConfig,
    *,
    now: float,
    finished: int,
    done_counts: list[tuple[float, int]],
    finishing_polls: int,
    previous: float | None,
    sent_at: float | None,
    shortest: float | None,
) -> float:
    """Seconds until the next poll of an invocation (``finished`` runs of it seen so far,
    ``done_counts`` the (time, finished) of its last polls, ``finishing_polls`` the polls since
    one first saw a run finished, ``previous`` the last delay, ``sent_at`` its run-tests call).

    Runs finishing: ``1 / (poll_budget x finish rate)`` within ``poll_interval_min``
    .. ``poll_interval``, so a large invocation whose runs finish fast is polled often
    at the same cost per result and a sparse one no more than every ``poll_interval``;
    never faster than ``poll_interval`` while the polls since the first finished run
    exceed ``poll_budget`` per run finished (the sparse phases' polls are paid back
    first). Nothing finished yet: sleep until 90% of the ``shortest`` run seen (when known),
    else back off x1.5 up to ``poll_interval_max``."""
    if finished:
        rate = finish_rate(done_counts, 2 * o.poll_interval)
        fastest = min(o.poll_interval_min, o.poll_interval)
        in_credit = finishing_polls < o.poll_budget * finished
        if rate <= 0 or not in_credit:
            return o.poll_interval
        return min(o.poll_interval, max(fastest, 1 / (o.poll_budget * rate)))
    if shortest is not None and sent_at is not None:
        expected = sent_at + 0.9 * shortest
        return max(o.poll_interval, expected - now)
    if previous is None:
        return o.poll_interval
    return min(previous * BACKOFF, o.poll_interval_max)
