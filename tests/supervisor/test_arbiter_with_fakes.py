"""The arbiter's own decisions -- boot order, stop order, reload, commands -- driven by hand
with fake pools and a fake clock (no processes, no shared memory, no sockets)."""
from __future__ import annotations

import types

from speedysvc.supervisor import commands
from speedysvc.supervisor.arbiter import Arbiter
from speedysvc.supervisor.config import load_config
from supervisor_fakes import FakePool, FakeSystem


class FakeRuntime:
    """What the arbiter asks of its runtime, without files, logs or a control service."""

    def __init__(self):
        self.capture = types.SimpleNamespace(service=lambda *a, **k: None)
        self.collector = types.SimpleNamespace(latest={}, totals={}, stopped=lambda name: None,
                                               forget=lambda name: None)
        self.control = types.SimpleNamespace(shm_address="shm://x", tcp_address=None)

    def isolate(self, config):
        return config


def write_ini(path, sections: dict[str, dict]) -> str:
    lines = ["[supervisor]", "scope = fakes", "[web monitor]", "enabled = false", "[defaults]",
             f"log_dir = {path}/logs", "restart_backoff_initial = 100ms"]
    for name, options in sections.items():
        lines += [f"[{name}]", "import_from = supervisor_services",
                  *(f"{k} = {v}" for k, v in options.items())]
    ini = path / "fake.ini"
    ini.write_text("\n".join(lines) + "\n")
    return str(ini)


def make_arbiter(tmp_path, sections):
    system = FakeSystem()
    pools: dict[str, FakePool] = {}

    def factory(service_cls, scope, name, *rest):
        pools[name] = FakePool(system)
        return pools[name]

    arbiter = Arbiter(load_config(write_ini(tmp_path, sections)), system=system, pool_factory=factory)
    arbiter.runtime = FakeRuntime()
    for svc in arbiter.config.services:
        arbiter.pools[svc.name] = arbiter.make_pool(svc)
    arbiter.order.begin_boot([s.name for s in arbiter.config.services if s.enabled])
    return arbiter, system, pools


def tick(arbiter, pools):
    for pool in pools.values():
        pool.ready_all()
        pool.exit_stopping()
    for sp in arbiter.pools.values():
        sp.tick()
    arbiter._advance_boot()
    arbiter.reloader.add_replacements()


def test_services_boot_in_file_order_each_waiting_for_the_previous(tmp_path):
    arbiter, system, pools = make_arbiter(tmp_path, {"First": {}, "Second": {}})
    arbiter._advance_boot()
    assert list(pools) == ["first"]                 # the second waits (wait_until_completed)
    tick(arbiter, pools)
    tick(arbiter, pools)
    assert list(pools) == ["first", "second"]
    tick(arbiter, pools)
    assert arbiter.phase == "running"


def test_a_service_that_fails_its_boot_stops_the_supervisor_with_exit_70(tmp_path):
    arbiter, system, pools = make_arbiter(tmp_path, {"First": {}, "Second": {}})
    arbiter._advance_boot()
    arbiter.pools["First"].kill_all()                 # every worker gone at once...
    arbiter.pools["First"].fail("could not start: no database")   # ...and the service failed
    arbiter._advance_boot()
    assert (arbiter.phase, arbiter.exit_code) == ("stopping", 70)
    assert "second" not in pools


def test_stop_goes_in_reverse_order_one_service_at_a_time(tmp_path):
    arbiter, system, pools = make_arbiter(tmp_path, {"First": {}, "Second": {}})
    for _ in range(4):
        tick(arbiter, pools)
    arbiter.begin_stop()
    assert arbiter.order.advance_stop(arbiter.pools) is False
    assert [p for p in pools if any(a == "stop" for a, _ in pools[p].log)] == ["second"]
    tick(arbiter, pools)
    arbiter.order.advance_stop(arbiter.pools)
    assert {p for p in pools if any(a == "stop" for a, _ in pools[p].log)} == {"second", "first"}
    tick(arbiter, pools)
    assert arbiter.order.advance_stop(arbiter.pools) is True


def test_reload_adds_removes_and_rescales_without_touching_the_rest(tmp_path):
    arbiter, system, pools = make_arbiter(tmp_path, {"First": {}, "Second": {}, "Other": {}})
    for _ in range(6):
        tick(arbiter, pools)
    write_ini(tmp_path, {"First": {}, "Second": {"min_proc_num": "2", "max_proc_num": "3"},
                         "Work": {}})
    result = arbiter.reload()
    assert result["ok"], result
    assert "removing other" in result["message"]
    tick(arbiter, pools)
    assert list(arbiter.pools) == ["First", "Second", "Work"]
    assert len(pools["second"].live_ids()) == 2
    assert not any(a == "stop" for a, _ in pools["first"].log)   # untouched


def test_commands_reach_the_pools_through_the_registry(tmp_path):
    arbiter, system, pools = make_arbiter(tmp_path, {"Work": {"max_proc_num": "3"}})
    tick(arbiter, pools)
    tick(arbiter, pools)
    assert commands.run(arbiter, "scale", ("work", 3))["ok"]
    tick(arbiter, pools)
    assert len(pools["work"].live_ids()) == 3
    assert commands.run(arbiter, "set_note", ("Work", "hat: connected"))["ok"]
    assert arbiter.lookup("work").status_dict({}, {})["note"] == "hat: connected"
    assert commands.run(arbiter, "stop", ("work",))["message"] == "stopping work"
