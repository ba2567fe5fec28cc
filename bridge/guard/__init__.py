"""The guard: a Synapse module every member homeserver loads to enforce the federation's policy.

It imports only the standard library and Synapse's public module API, so Synapse can load
it without the rest of the bridge's dependencies.
"""

from bridge.guard.config import GuardConfig
from bridge.guard.module import CaduceeGuard

__all__ = ["CaduceeGuard", "GuardConfig"]
