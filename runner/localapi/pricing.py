"""How the local API prices its conversations, consistently everywhere it reports a cost.

* Each agent message carries ``llm_usage``: input tokens (the agent's definition plus the
  transcript so far, ~4 characters a token) and output tokens (the message), priced by the
  agent's LLM from ``PRICES_PER_MILLION`` (USD per million tokens).
* A conversation's price is the sum of its messages' prices. A test run's ``charging`` has that
  sum as ``llm_price`` and ``llm_charge`` = ``credits_used`` = one credit per 10 tokens (at
  least 1); the call and the platform are free here. An invocation's ``total_price`` and
  ``credits_used`` are the sums over its finished runs.
* ``POST /v1/convai/agent/{id}/llm-usage/calculate`` answers, for every LLM of the table, the
  price of one agent message of ``TYPICAL_OUTPUT_CHARS`` whose input is the prompt plus
  ``TYPICAL_CONTEXT_CHARS`` of transcript, and per minute that times
  ``MESSAGES_PER_MINUTE``. It is an estimate, as the vendor's is: a long conversation's later
  messages cost more (their input grows), a short one's less.
* The server bills a conversation once its reply went out in full (a simulate reply, or a test
  run that finished); ``/_local/stats`` counts it under ``billing``, so a test can hold a
  run's tables against what the server charged.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner.wire.pricing import LLMPrice, LLMUsageCalculation
from runner.wire.simulate import LLMUsage, ModelUsage, TokenCategoryUsage, usage_totals

PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-2.0-flash-lite": (0.075, 0.30),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
}
"""USD per million (input, output) tokens; other models cost the default below."""
DEFAULT_PRICE_PER_MILLION = (0.50, 2.00)

CHARS_PER_TOKEN = 4
TOKENS_PER_CREDIT = 10
TYPICAL_OUTPUT_CHARS = 160
TYPICAL_CONTEXT_CHARS = 1200
MESSAGES_PER_MINUTE = 30.0


def prices(llm: str) -> tuple[float, float]:
    return PRICES_PER_MILLION.get(llm, DEFAULT_PRICE_PER_MILLION)


def message_usage(llm: str, input_chars: int, output_chars: int) -> LLMUsage:
    """One agent message's ``llm_usage``."""
    tokens_in = max(1, input_chars // CHARS_PER_TOKEN)
    tokens_out = max(1, output_chars // CHARS_PER_TOKEN)
    price_in, price_out = prices(llm)
    return LLMUsage(
        model_usage={
            llm: ModelUsage(
                input=TokenCategoryUsage(
                    tokens=tokens_in, price=round(tokens_in * price_in / 1e6, 8)
                ),
                output_total=TokenCategoryUsage(
                    tokens=tokens_out, price=round(tokens_out * price_out / 1e6, 8)
                ),
            )
        }
    )


def conversation_cost(usages: Iterable[LLMUsage | None]) -> tuple[float, int, int]:
    """(USD, tokens, credits) of a conversation from its messages' ``llm_usage``."""
    usd = 0.0
    tokens = 0
    for usage in usages:
        if usage:
            tokens_in, tokens_out, price = usage_totals(usage)
            usd += price
            tokens += tokens_in + tokens_out
    return usd, tokens, max(1, round(tokens / TOKENS_PER_CREDIT))


def charging(usd: float, credits: int) -> dict[str, object]:
    """A test run's ``charging``: all of it is the LLM's."""
    return {
        "llm_price": usd,
        "llm_charge": credits,
        "call_charge": 0,
        "platform_charge": 0,
        "platform_price": 0.0,
        "is_burst": False,
        "tier": "local",
        "voice_surcharge_charge": 0,
    }


def calculate(prompt_chars: int) -> LLMUsageCalculation:
    """The calculate endpoint's reply for a prompt of ``prompt_chars`` characters."""
    out = []
    for llm in PRICES_PER_MILLION:
        usage = message_usage(llm, prompt_chars + TYPICAL_CONTEXT_CHARS, TYPICAL_OUTPUT_CHARS)
        per_message = usage_totals(usage)[2]
        out.append(
            LLMPrice(
                llm=llm,
                price_per_message=round(per_message, 8),
                price_per_minute=round(per_message * MESSAGES_PER_MINUTE, 8),
            )
        )
    return LLMUsageCalculation(llm_prices=out)
