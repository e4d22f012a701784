"""What an agent does in one conversation: each tendency drawn once, seeded.

An agent's ``tendencies`` (``agents.Tendencies``) are probabilities of good behaviour. At the
start of a conversation each is drawn once from the conversation's own generator, so the whole
conversation shows one consistent behaviour (an agent that improvises answers out of scope does
so every time in that call) and the transcript carries it where the judge can read it. The draw
uses a generator of its own, split off the conversation's, so the knobs (``--user-drift``) do
not shift it.
"""

from __future__ import annotations

import random

from runner.localapi.agents import Tendencies

BEHAVIOURS: tuple[str, ...] = tuple(Tendencies.model_fields)
"""Every behaviour's name, in the order they are drawn."""


def draw_behaviour(tendencies: Tendencies, rng: random.Random) -> dict[str, bool]:
    """True where the agent behaves well in this conversation (one draw per behaviour)."""
    return {name: rng.random() < getattr(tendencies, name) for name in BEHAVIOURS}
