"""Scenario and criterion data shared by the tests that run small sweeps (one copy, not three)."""

from __future__ import annotations

from typing import Any

ORDER_STATUS_CRITERION: dict[str, Any] = {
    "id": "order_status_given",
    "name": "Order status given",
    "conversation_goal_prompt": "The agent tells the customer the order status.",
}

MISSING_ORDER: dict[str, Any] = {
    "id": "missing_order",
    "first_message": "My order never arrived.",
    "prompt": "You ordered headphones, order A-10234, and they never arrived.",
}
REFUND: dict[str, Any] = {
    "id": "refund",
    "first_message": "I want a refund.",
    "prompt": "You want a refund for a broken kettle, order B-2211.",
}
OFF_TOPIC: dict[str, Any] = {
    "id": "off_topic",
    "first_message": "What is the weather like?",
    "prompt": "You only want to chat about the weather on Mars.",
}
SUPPORT_SCENARIOS: list[dict[str, Any]] = [MISSING_ORDER, REFUND, OFF_TOPIC]
