"""The reload planner: old configuration + new configuration + what runs -> steps (no processes)."""
from __future__ import annotations

import dataclasses

from speedysvc.supervisor import reload_planner as rp
from speedysvc.supervisor.config import Config, ServiceConfig
from speedysvc.supervisor.options import SERVICE, options_for


def svc(name: str, **overrides) -> ServiceConfig:
    values = {n: opt.default_value() for n, opt in options_for(SERVICE).items()}
    values.update(import_from="supervisor_services", max_proc_num=4)
    values.update(overrides)
    return ServiceConfig(name=name, **values)


def config(*services, web=None, sup=None) -> Config:
    return Config("/x.ini", list(services), web or {"port": 5155}, sup or {"scope": "s"})


def test_nothing_changed_is_no_plan():
    assert rp.plan_reload(config(svc("Work")), config(svc("Work")), {"Work": True}) is None


def test_each_kind_of_change_becomes_its_step():
    old = config(svc("Work"), svc("Gone"), svc("Other"), svc("Off"), svc("Back", enabled=False),
                 svc("Moved"))
    new = config(svc("Work", max_proc_num=2), svc("Other"), svc("Off", enabled=False),
                 svc("Back"), svc("Moved", import_from="elsewhere"), svc("New"))
    plan = rp.plan_reload(old, new, {"Work": True, "Gone": True, "Other": True, "Off": True,
                                     "Back": False, "Moved": True})
    steps = {s.section: s for s in plan.steps}
    assert steps["Gone"].action == rp.REMOVE and steps["Gone"].config is None
    assert steps["Work"].action == rp.RECONFIGURE and steps["Work"].changed == ("max_proc_num",)
    assert steps["Off"].action == rp.STOP
    assert steps["Back"].action == rp.START
    assert steps["Moved"].action == rp.REPLACE and steps["Moved"].config.import_from == "elsewhere"
    assert steps["New"].action == rp.ADD
    assert "Other" not in steps                          # untouched
    assert plan.order == ("Work", "Other", "Off", "Back", "Moved", "New", "Gone")
    assert not plan.supervisor_changed and not plan.web_monitor_changed


def test_enabling_a_service_that_still_runs_reconfigures_it():
    old = config(svc("Work", enabled=False))
    new = config(svc("Work", enabled=True, max_proc_num=3))
    plan = rp.plan_reload(old, new, {"Work": True})     # still stopping when the reload came
    assert [(s.action, s.changed) for s in plan.steps] == [(rp.RECONFIGURE, ("max_proc_num",))]


def test_web_monitor_and_supervisor_sections_are_flagged():
    plan = rp.plan_reload(config(svc("Work")), config(svc("Work"), web={"port": 1}, sup={"scope": "t"}),
                          {"Work": True})
    assert plan.steps == () and plan.web_monitor_changed and plan.supervisor_changed
    assert dataclasses.is_dataclass(plan)
