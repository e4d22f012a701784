"""What a simulation costs, in the vendor's shapes: a test run's ``charging`` breakdown and the
"Calculate expected LLM usage" endpoint (prices per minute and per message for each LLM).

Shared by the runner (which records and estimates spend) and the local API (which bills its
conversations the same way). Units: ``*_price`` fields are USD, ``*_charge`` fields and
``credits_used`` are the vendor's credits.
"""

from __future__ import annotations

from pydantic import Field

from runner.wire.simulate import WireModel

CALCULATE_PATH = "/v1/convai/agent/{agent_id}/llm-usage/calculate"
"""``POST``: expected LLM prices for one agent (its prompt length, knowledge base)."""
CALCULATE_ANY_PATH = "/v1/convai/llm-usage/calculate"
"""``POST``: the same without an agent (the body gives the prompt length)."""


class Charging(WireModel):
    """``ConversationChargingCommonModel`` (a test run's ``charging``): the fields we record."""

    llm_price: float | None = None
    """USD: the sum of the per-model LLM prices."""
    llm_charge: float | None = None
    """Credits charged for the LLM."""
    call_charge: float | None = None
    """Credits charged for the call."""
    platform_charge: float | None = None
    """Credits charged by the platform."""
    platform_price: float | None = None
    """USD charged by the platform."""
    is_burst: bool | None = None
    tier: str | None = None
    voice_surcharge_charge: int | None = None
    """Credits of the voice surcharge (SDK 2.78; absent from older replies)."""


class CalculateRequest(WireModel):
    """``LLMUsageCalculatorRequestModel``: every field optional."""

    prompt_length: int | None = Field(default=None, ge=0)
    number_of_pages: int | None = Field(default=None, ge=0)
    rag_enabled: bool | None = None
    service_tier: str | None = None


class LLMPrice(WireModel):
    """One LLM's expected prices (USD)."""

    llm: str
    price_per_minute: float
    price_per_message: float


class LLMUsageCalculation(WireModel):
    """``LLMUsageCalculatorResponseModel``."""

    llm_prices: list[LLMPrice] = Field(default_factory=list)
