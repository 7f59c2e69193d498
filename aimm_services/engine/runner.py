"""The engine's view of plugin execution: what a plugin call is and who runs it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol


@dataclass(frozen=True)
class PluginCall:
    """One plugin invocation. Args are wire-encoded (see `wire_values`)."""

    kind: str                       # instantiate | data_access | fit | predict | check
    key: str                        # model type, or data access name
    instance: Optional[bytes] = None
    args: tuple = ()
    kwargs: Optional[dict] = None


class PluginRunner(Protocol):
    """Runs plugin calls somewhere (the plugin service's worker pool) and can stop them."""

    def run(self, call_id: str, call: PluginCall,
            on_progress: Callable[[Any], None]) -> dict:
        """Run `call`, blocking; progress values reported by the plugin go to
        `on_progress`. Returns the plugin service's reply dict. Raises the plugin's
        exception, or a transport error if the call was stopped."""

    def kill(self, call_id: str) -> None:
        """Stop the call `call_id` if it is running or about to run (its worker is killed
        and replaced). Must not block for long."""

    def registered(self) -> dict:
        """Registered plugin keys per kind (instantiate, fit, predict, ...)."""
