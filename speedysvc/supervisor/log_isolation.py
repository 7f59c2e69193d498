"""Two deployments never write the same log files or metrics database.

A default log_dir is per scope already (`<tmp>/speedysvc_logs/<scope>`). An explicit log_dir
that a running supervisor of another scope already writes to -- two copies of one .ini in two
directories both saying `log_dir = /var/log/myapp` -- gets a subdirectory named after this
supervisor's scope, so records are never interleaved. What the running supervisors write to
is read from their state files (`log_dirs`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable


def dirs_of(config: Any) -> list[str]:
    """Every log directory a configuration writes to (the supervisor's holds metrics.sqlite)."""
    return sorted({config.supervisor.log_dir, *(svc.log_dir for svc in config.services)})


def taken_dirs(live_states: Iterable[dict[str, Any]], scope: str) -> set[str]:
    """Log directories in use by running supervisors of other scopes."""
    taken: set[str] = set()
    for state in live_states:
        if state.get("scope") == scope:
            continue
        taken.update(d for d in state.get("log_dirs") or [state.get("log_dir")] if isinstance(d, str))
    return taken


def separate(config: Any, scope: str, taken: set[str]) -> Any:
    """`config` with each log_dir in `taken` replaced by its `<log_dir>/<scope>` subdirectory."""
    def own(path: str) -> str:
        return os.path.join(path, scope) if path in taken else path
    if not taken & set(dirs_of(config)):
        return config
    services = [dataclasses.replace(svc, log_dir=own(svc.log_dir)) for svc in config.services]
    supervisor = dataclasses.replace(config.supervisor, log_dir=own(config.supervisor.log_dir))
    return dataclasses.replace(config, services=services, supervisor=supervisor)
