"""The guard: a Synapse module every member homeserver loads to enforce the federation's policy.

It imports only the standard library and Synapse's public module API, so Synapse can load
it without the rest of the bridge's dependencies; the one exception, reaching Synapse's own
federation whitelist to keep it live, is isolated and explained in `bridge.guard.outsiders`.
The module class is loaded on first use, so that the stdlib-only parts
(`bridge.guard.allowlist`: server names, the bridge's allow-list answer) can be used
outside Synapse too (the bot reads the same answer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.guard.config import GuardConfig
    from bridge.guard.module import CaduceeGuard

__all__ = ["CaduceeGuard", "GuardConfig"]


def __getattr__(name: str) -> Any:
    if name == "CaduceeGuard":
        from bridge.guard.module import CaduceeGuard

        return CaduceeGuard
    if name == "GuardConfig":
        from bridge.guard.config import GuardConfig

        return GuardConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
