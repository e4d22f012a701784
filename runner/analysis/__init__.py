"""Statistics over a run's tables: pure functions from Polars frames to Polars frames, the one
implementation the report, ``check``, ``compare``, the viewer and the notebook all read.

Conventions, the same in every function here:

- A criterion's pass rate is ``success / (success + failure)``. ``unknown`` (the judge could
  not tell) is neither a pass nor a failure and is counted on its own; job errors are not
  outcomes at all and never enter a pass rate, but are counted beside it (``errors``).
- An errored job has no criteria rows. It is charged to the criteria that the ok jobs of the
  same agent and scenario were judged on; when none of them succeeded its criteria are not
  known, and it lands in a row whose ``criterion_id`` is null.
- Everything is computed from counts that add up part by part (``counts``): a run in
  progress, read one flush at a time, gets the figures its finished tables will give.
- Intervals are 95% Wilson score intervals (they behave at 0% and 100%, unlike the normal
  approximation). They treat every trial as independent; repeats of one scenario are not
  quite, so read an interval pooled over few scenarios as optimistic.
- A *case* is what repeats repeat: one agent x scenario x matrix cell. The repeat statistics
  (pass@k, pass^k, flakiness) are computed per case and criterion, then averaged.
- Latency metrics come from ok jobs only (a failed attempt has no analysis to time).

The modules, each one job: ``intervals`` (the formulas), ``frames`` (shared helpers),
``counts`` (summable counts and pass rates), ``conversation`` (the conversation-level
verdict, ``conversation_passed``), ``sources`` (narrowing rows to ``extra`` / ``agent`` /
``assert``), ``agreement`` (an assertion against the criterion it mirrors), ``repeats``
(per-case trials, pass@k, flakiness), ``latency``, ``timeline`` (attempts and in-flight over
time), ``spend`` and ``compare``. Everything public is re-exported here:
``from runner import analysis``.
"""

from __future__ import annotations

from runner.analysis.agreement import Agreement, agreement
from runner.analysis.compare import (
    CASE_ORDER,
    VERDICTS,
    align_criteria,
    compare_cases,
    compare_counts,
    compare_pass_rates,
    compare_runs,
    judged_difference,
)
from runner.analysis.conversation import (
    CONVERSATION,
    conversation_passed,
    conversation_results,
    conversation_verdicts,
)
from runner.analysis.counts import (
    COUNTS,
    RESULTS,
    charged_errors,
    check_grouping,
    combine_counts,
    error_counts,
    error_rates,
    errored_counts,
    judged_counts,
    outcomes,
    pass_rates,
    rates_from,
)
from runner.analysis.frames import CASE_COLUMNS, Frame, case_columns
from runner.analysis.intervals import (
    Z95,
    newcombe_interval,
    pass_at_k,
    pass_hat_k,
    two_proportion_p_value,
    wilson_interval,
)
from runner.analysis.latency import (
    HISTOGRAM_BINS,
    LATENCY_COLUMNS,
    MESSAGE_METRICS,
    QUANTILES,
    bin_of,
    histogram_bins,
    histograms,
    latency_percentiles,
    latency_samples,
    message_latencies,
    percentiles_of,
)
from runner.analysis.repeats import (
    case_counts,
    case_trials,
    flakiness,
    flakiness_from,
    flaky_cases,
    pass_k_by_criterion,
    pass_k_from,
    repeat_cases,
    repeat_pass_rates,
    trials_of,
)
from runner.analysis.sources import (
    JUDGE,
    SOURCES,
    check_sources,
    judged_rows,
    of_sources,
)
from runner.analysis.spend import (
    SPEND_COLUMNS,
    compare_spend,
    passed_jobs,
    spend,
    spend_over_time,
)
from runner.analysis.timeline import attempts_over_time, in_flight_over_time

__all__ = [
    "CASE_COLUMNS",
    "CASE_ORDER",
    "CONVERSATION",
    "COUNTS",
    "HISTOGRAM_BINS",
    "JUDGE",
    "LATENCY_COLUMNS",
    "MESSAGE_METRICS",
    "QUANTILES",
    "RESULTS",
    "SOURCES",
    "SPEND_COLUMNS",
    "VERDICTS",
    "Z95",
    "Agreement",
    "Frame",
    "agreement",
    "align_criteria",
    "attempts_over_time",
    "bin_of",
    "case_columns",
    "case_counts",
    "case_trials",
    "charged_errors",
    "check_grouping",
    "check_sources",
    "combine_counts",
    "compare_cases",
    "compare_counts",
    "compare_pass_rates",
    "compare_runs",
    "compare_spend",
    "conversation_passed",
    "conversation_results",
    "conversation_verdicts",
    "error_counts",
    "error_rates",
    "errored_counts",
    "flakiness",
    "flakiness_from",
    "flaky_cases",
    "histogram_bins",
    "histograms",
    "in_flight_over_time",
    "judged_counts",
    "judged_difference",
    "judged_rows",
    "latency_percentiles",
    "latency_samples",
    "message_latencies",
    "newcombe_interval",
    "of_sources",
    "outcomes",
    "pass_at_k",
    "pass_hat_k",
    "pass_k_by_criterion",
    "pass_k_from",
    "pass_rates",
    "passed_jobs",
    "percentiles_of",
    "rates_from",
    "repeat_cases",
    "repeat_pass_rates",
    "spend",
    "spend_over_time",
    "trials_of",
    "two_proportion_p_value",
    "wilson_interval",
]
