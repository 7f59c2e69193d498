"""SIGHUP re-reads the .ini file and touches only what changed."""
from __future__ import annotations

import signal

from supervisor_harness import wait_until


def test_hup_applies_changes_and_leaves_other_services_alone(make_supervisor):
    services = {"Work": {}, "Other": {}}
    sup = make_supervisor(services).start()
    work_before, other_before = sup.pids("work"), sup.pids("other")

    # Work: a live option (more workers) keeps the existing worker; Other: an option its
    # workers depend on restarts it; Second: a new section starts.
    sup.write_ini({"Work": {"min_proc_num": "2", "max_proc_num": "2"},
                   "Other": {"force_insecure_serialisation": "true"},
                   "Second": {}})
    sup.signal(signal.SIGHUP)
    wait_until(lambda: len(sup.pids("work")) == 2, message="Work to grow to 2 workers")
    wait_until(lambda: (p := sup.pids("other")) and p != other_before, message="Other to restart")
    wait_until(lambda: any(s["name"] == "second" and s["status"] == "running"
                           for s in sup.status()["services"]), message="Second to start")
    assert set(work_before) <= set(sup.pids("work"))
    assert [s["name"] for s in sup.status()["services"]] == ["work", "other", "second"]

    # a broken file is refused: the supervisor keeps running what it has
    with open(sup.ini, "a") as f:
        f.write("\n[Broken]\nimport_from = no_such_module_anywhere\n")
    sup.signal(signal.SIGHUP)
    wait_until(lambda: "reload refused" in sup.log_text(), message="the refusal to be logged")
    assert "no_such_module_anywhere" in sup.log_text()
    assert all(s["status"] == "running" for s in sup.status()["services"])

    # removing a section stops that service only; `speedysvc reload` does what HUP does
    work_now = sup.pids("work")
    sup.write_ini({"Work": {"min_proc_num": "2", "max_proc_num": "2"},
                   "Other": {"force_insecure_serialisation": "true"}})
    reloaded = sup.cli("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    wait_until(lambda: [s["name"] for s in sup.status()["services"]] == ["work", "other"],
               message="Second to be removed")
    assert sup.pids("work") == work_now
    assert sup.stop() == 0
