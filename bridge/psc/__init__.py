"""Pro Santé Connect sign-in: a Synapse OIDC user-mapping provider and its pure rules.

Synapse loads `bridge.psc.PscMappingProvider` (standard library and Synapse only). The class is
loaded on first use, so that the pure parts (`claims`, `admission`), which the bridge uses to
decide admission, can be imported without Synapse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.psc.provider import PscMappingProvider

__all__ = ["PscMappingProvider"]


def __getattr__(name: str) -> Any:
    if name == "PscMappingProvider":
        from bridge.psc.provider import PscMappingProvider

        return PscMappingProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
