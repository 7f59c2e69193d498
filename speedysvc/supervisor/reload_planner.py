"""What a reload does, decided without touching anything: old configuration + new configuration
+ which services have workers -> the steps to take. The arbiter carries them out.

Only what changed is touched. A section whose class changed (import_from) is a new service:
the old pool stops, and a new one starts once it has. Options a running service can take
live are applied in place (ServicePool.reconfigure decides which need a restart).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from .config import config_diff

REMOVE = "remove"            # section gone: stop its pool and forget it
REPLACE = "replace"          # another class: stop the pool, then add a new one with `config`
STOP = "stop"                # enabled = false now
START = "start"              # enabled again, and not running
RECONFIGURE = "reconfigure"  # running (or stopped) with changed options
ADD = "add"                  # a new section


@dataclass(frozen=True)
class Step:
    action: str
    section: str
    config: Any = None                 # the section's new ServiceConfig (not for REMOVE)
    changed: tuple[str, ...] = ()      # RECONFIGURE: the options that changed


@dataclass(frozen=True)
class ReloadPlan:
    steps: tuple[Step, ...]
    order: tuple[str, ...]             # sections in the new file's order (removed ones last)
    supervisor_changed: bool           # [supervisor] settings apply after a restart only
    web_monitor_changed: bool          # the web monitor is restarted


def plan_reload(old: Any, new: Any, has_workers: Mapping[str, bool]) -> Optional[ReloadPlan]:
    """The steps from `old` to `new` (Config objects); None when nothing changed.
    `has_workers[section]` says whether that section's service has workers now."""
    diff = config_diff(old, new)
    if not diff:
        return None
    new_by_name = {s.name: s for s in new.services}
    steps = [Step(REMOVE, section) for section in diff.removed]
    for section in diff.changed:
        svc = new_by_name[section]
        changed = diff.changed_options[section]
        if "import_from" in changed:
            steps.append(Step(REPLACE, section, svc))
        elif not svc.enabled:
            steps.append(Step(STOP, section, svc))
        elif "enabled" in changed and not has_workers.get(section, False):
            steps.append(Step(START, section, svc))
        else:
            steps.append(Step(RECONFIGURE, section, svc,
                              tuple(k for k in changed if k != "enabled")))
    steps += [Step(ADD, section, new_by_name[section]) for section in diff.added]
    order = tuple(s.name for s in new.services) + tuple(diff.removed)
    return ReloadPlan(tuple(steps), order, bool(diff.supervisor_changed),
                      bool(diff.web_monitor_changed))
