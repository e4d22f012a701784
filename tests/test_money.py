"""Money as every page prints it: one signed format, no exponent notation (issue 29)."""

from __future__ import annotations

import polars as pl
import pytest

from runner.estimate import money
from runner.report.pages import spend_diff_frame


@pytest.mark.parametrize(
    ("value", "signed", "text"),
    [
        (0.0, True, "$0"),
        (8.7e-05, True, "+$0.000087"),
        (-8.7e-05, False, "-$0.000087"),
        (-0.0161, True, "-$0.0161"),
        (0.0161, False, "$0.0161"),
        (0.00012, True, "+$0.0001"),
        (1234.5, True, "+$1,234.50"),
        (-2.0, False, "-$2.00"),
        (1.2e-07, False, "$0.00000012"),
    ],
)
def test_money_has_its_sign_before_the_currency_and_no_exponent(
    value: float, signed: bool, text: str
) -> None:
    assert money(value, signed=signed) == text


def test_credits_signed() -> None:
    assert money(-1500, "credits", signed=True) == "-1,500 credits"
    assert money(1500, "credits", signed=True) == "+1,500 credits"


def test_compare_spend_differences_share_one_signed_format() -> None:
    table = pl.DataFrame(
        {
            "measure": ["usd", "usd_per_job"],
            "a": [0.05, 0.0002],
            "b": [0.0339, 0.000287],
            "diff": [0.0339 - 0.05, 0.000287 - 0.0002],
            "ratio": [0.678, 1.435],
        }
    )
    diffs = spend_diff_frame(table)["b - a"].to_list()
    assert diffs == ["-$0.0161", "+$0.000087"]
