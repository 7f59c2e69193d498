"""Names shared by the supervisor, the replicas and ray:// clients (plain Python, no Ray)."""
from __future__ import annotations

import os

NAMESPACE = "speedysvc"         # the Ray namespace of every supervisor's actors
ADDRESS_FILE_SUFFIX = ".ray"    # <runtime_dir>/<scope>.ray: the cluster a supervisor uses


def app_name(scope: str, service: str) -> str:
    """The Serve application (and deployment) of one service of one supervisor."""
    return f"{scope}.{service}"


def board_name(scope: str, service: str) -> str:
    """The named actor holding a service's replica readings, request ids and events."""
    return f"speedysvc-board:{scope}.{service}"


def split_app_name(app: str) -> tuple[str, str]:
    scope, _, service = app.partition(".")
    return scope, service


def address_file(state_file: str) -> str:
    """Where a supervisor writes the Ray address it uses, next to its state file."""
    base, _ = os.path.splitext(state_file)
    return base + ADDRESS_FILE_SUFFIX
