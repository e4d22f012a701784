"""The viewer A/B's verdict (``bench.view_ab.compare``) over plain ``view.json`` dicts: medians
over rounds, the 10% ratio rule, the absolute rule for pages too fast to compare."""

from __future__ import annotations

from typing import Any

import pytest

from bench.view_ab import RSS, compare, missed

SHAPE = {"agents": 4, "scenarios": 125, "seed": 0}


def report(pages: dict[str, float], peak: float = 200.0, **extra: Any) -> dict[str, Any]:
    """A ``view.json`` with one case, ``finished``: page name -> median seconds."""
    return {
        "shape": SHAPE,
        "parts": 500,
        "requests_per_page": 5,
        "cases": {
            "finished": {
                "pages": [{"page": name, "median_secs": secs} for name, secs in pages.items()],
                "rss_mb": {"peak": peak},
            }
        },
        **extra,
    }


def verdicts(before: list[dict[str, Any]], now: list[dict[str, Any]]) -> dict[str, Any]:
    return {r.item: (r.rule, r.met) for r in compare(before, now)}


def test_a_slow_page_is_judged_by_its_ratio_at_ten_percent() -> None:
    before = [report({"a": 0.100, "b": 0.100, "c": 0.008})]
    now = [report({"a": 0.109, "b": 0.112, "c": 0.0125})]
    assert verdicts(before, now) == {
        "a": ("ratio", True),
        "b": ("ratio", False),
        # one side above 10 ms: the ratio (1.56x) decides, not the difference
        "c": ("ratio", False),
        RSS: ("ratio", True),
    }


def test_pages_both_under_ten_ms_are_judged_by_the_difference() -> None:
    before = [report({"fast": 0.004, "fast slower": 0.004, "faster": 0.009})]
    now = [report({"fast": 0.0049, "fast slower": 0.0052, "faster": 0.002})]
    # 0.9 ms slower (1.22x) is met, 1.2 ms slower is not, faster always is
    assert verdicts(before, now) == {
        "fast": ("absolute", True),
        "fast slower": ("absolute", False),
        "faster": ("absolute", True),
        RSS: ("ratio", True),
    }


def test_peak_rss_is_judged_by_its_ratio() -> None:
    assert verdicts([report({}, peak=200)], [report({}, peak=219)])[RSS] == ("ratio", True)
    assert verdicts([report({}, peak=200)], [report({}, peak=221)])[RSS] == ("ratio", False)


def test_each_side_is_the_median_over_rounds_so_one_outlier_round_does_not_decide() -> None:
    before = [report({"p": s}) for s in (0.100, 0.500, 0.098)]
    now = [report({"p": s}) for s in (0.300, 0.105, 0.104)]
    (row, _rss) = compare(before, now)
    assert (row.before, row.now) == (0.100, 0.105)
    assert row.met is True and row.ratio == pytest.approx(1.05)
    assert row.before_spread == pytest.approx((0.500 - 0.098) / 0.100)


def test_a_page_on_one_side_only_is_listed_without_a_verdict() -> None:
    rows = compare([report({"old": 0.1})], [report({"new": 0.1})])
    by_item = {r.item: r for r in rows}
    assert [r.item for r in rows] == ["new", RSS, "old"]
    assert by_item["new"].before is None and by_item["old"].now is None
    assert by_item["new"].met is None and by_item["new"].rule == "one side"
    assert missed(rows) == []


def test_the_sides_must_have_measured_the_same_run() -> None:
    other = report({"p": 0.1})
    other["shape"] = {**SHAPE, "seed": 1}
    with pytest.raises(ValueError, match="shape"):
        compare([report({"p": 0.1})], [other])
    with pytest.raises(ValueError, match="at least one round"):
        compare([], [report({"p": 0.1})])
