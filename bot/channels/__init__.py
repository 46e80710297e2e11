"""Channels: where citizens reach the assistant (terminal, Telegram, Zalo, web chat), and the registry of them.

A channel turns a platform's messages into questions for the service desk (`bot.service.desk`) and renders the
engine's `Answer` with `bot.channels.render`. Channels may import the engine, the service, `bot.config`, `render`
and this registry; they never import each other. The web server mounts other channels' routes (the Zalo webhook)
through the registry.

Adding a channel: one module here that declares `CHANNEL = ChannelInfo(...)`, plus its settings section in
`bot/config.py` when it has settings. The report's colours, the sample log and the web server's routes come from
the registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True)
class ChannelInfo:
    """What the rest of the system knows about a channel."""

    name: str  # as written in the question log
    label: str  # as staff read it
    color: str  # of its bars in the staff report
    share: float = 0.0  # of the questions in the generated sample log (`report --sample`)
    section: str = ""  # its [section] of config.toml, if it has settings
    # Called by `python -m bot serve` with (app, cfg, desk, env) to add the channel's routes to the web server.
    mount: Callable[..., Any] | None = None


NOT_CHANNELS = frozenset({"render"})


@cache
def registry() -> dict[str, ChannelInfo]:
    """Every channel module's declaration, by name (modules are imported on first call)."""
    found: dict[str, ChannelInfo] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name in NOT_CHANNELS or module.name.startswith("_"):
            continue
        info = getattr(importlib.import_module(f"{__name__}.{module.name}"), "CHANNEL", None)
        if isinstance(info, ChannelInfo):
            found[info.name] = info
    return dict(sorted(found.items()))
