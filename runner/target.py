"""Where a run sends: the base URL, the API key, and the bundled local API's life.

The one place that reads the API key, with one rule for every command: required for a remote
target, optional for the local API (``local``, or a loopback URL such as a ``make serve``
instance, which only checks keys when started with one). The key is never printed or written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import httpx

from runner.config.models import Config


class SetupError(Exception):
    """The run cannot start (missing API key, local API failed to start, ...): nothing was sent."""


def is_loopback(base_url: str) -> bool:
    host = httpx.URL(base_url).host
    return host == "localhost" or host.startswith("127.") or host == "::1"


def read_api_key(cfg: Config, base_url: str | None = None) -> str | None:
    """The key from the environment variable the config names, for ``base_url`` (default: the
    config's target). Raises ``SetupError`` when a remote target has none."""
    url = base_url or cfg.target.base_url
    key = os.environ.get(cfg.target.api_key_env) or None
    if key is None and url != "local" and not is_loopback(url):
        raise SetupError(
            f"environment variable {cfg.target.api_key_env} is not set "
            f"(target.api_key_env): it must hold the API key for {url}"
        )
    return key


@contextlib.contextmanager
def target_url(cfg: Config) -> Iterator[str]:
    """The base URL to send to; for ``local``, a local API subprocess for the run's duration."""
    if not cfg.target.is_local:
        yield cfg.target.base_url
        return
    from runner.localapi.server import start_local_api

    local = cfg.target.local
    seed = local.seed if local.seed is not None else cfg.run.seed
    args = ["--time-scale", str(local.time_scale), "--seed", str(seed), *local.args]
    try:
        api = start_local_api(args)
    except RuntimeError as exc:
        raise SetupError(f"could not start the local API: {exc}") from exc
    try:
        yield api.base_url
    finally:
        api.stop()
