"""A supervisor killed with SIGKILL leaves no process behind, and the next start sweeps the
shared memory it left."""
from __future__ import annotations

import os
import re
import signal
import urllib.request


from speedysvc import naming
from supervisor_harness import wait_until, wait_until_dead


def test_sigkill_leaves_no_worker_and_next_start_sweeps_shared_memory(make_supervisor):
    web = {"enabled": "true", "host": "127.0.0.1", "port": "0"}
    sup = make_supervisor({"Work": {"min_proc_num": "2", "max_proc_num": "2",
                                    "tcp_bind": "127.0.0.1:0"}}, web_monitor=web).start()
    url = wait_until(lambda: sup.state().get("web_monitor"), message="the web monitor's address")
    with urllib.request.urlopen(url + "health", timeout=10) as r:
        assert r.status == 200
    children = sup.children()
    kinds = " ".join(" ".join(c.cmdline()) for c in children)
    assert "speedysvc.worker_main" in kinds and "speedysvc.tcp.front" in kinds and "web_monitor" in kinds
    assert len(children) >= 4  # two workers, the pool's TCP front and the web monitor
    sup.seen_pids.update(c.pid for c in children)
    assert naming.list_objects(sup.scope)

    os.kill(sup.proc.pid, signal.SIGKILL)
    sup.proc.wait(10)
    assert wait_until_dead([c.pid for c in children]) == []   # nothing outlived the supervisor
    assert sup.cli("status").returncode == 3                   # its state file is stale
    left = naming.list_objects(sup.scope)
    assert left, "a killed supervisor cannot clean up; the next start must"

    sup.start()   # the same scope again
    out = sup.log_text()
    # (the count includes this test's own client channels, which it keeps creating)
    assert re.search(r"removed \d+ shared-memory object\(s\) left by an earlier run", out)
    assert sup.service("work")["status"] == "running"
    assert sup.stop() == 0
    assert naming.list_objects(sup.scope) == []


def test_any_supervisor_start_sweeps_the_scopes_of_supervisors_proven_dead(tmp_path, scope):
    from speedysvc.serve import new_scope
    from supervisor_harness import Supervisor
    other_scope = new_scope()
    dead = Supervisor(tmp_path / "dead", scope, {"Work": {}})
    other = Supervisor(tmp_path / "other", other_scope, {"Work": {}})
    other.env["XDG_RUNTIME_DIR"] = dead.env["XDG_RUNTIME_DIR"]  # one user's runtime directory
    other.runtime_dir = dead.runtime_dir
    try:
        dead.start()
        children = dead.children()
        dead.seen_pids.update(c.pid for c in children)
        os.kill(dead.proc.pid, signal.SIGKILL)
        dead.proc.wait(10)
        assert wait_until_dead([c.pid for c in children]) == []
        assert naming.list_objects(scope), "a killed supervisor leaves its shared memory"
        assert os.path.exists(dead.state_path())

        other.start()   # another deployment, not the dead one's .ini
        assert naming.list_objects(scope) == []
        assert not os.path.exists(dead.state_path())
        assert f"supervisors that died without cleaning up (scopes {scope})" in other.log_text()
    finally:
        other.cleanup()
        dead.cleanup()
        naming.sweep(other_scope)


def test_two_deployments_with_one_explicit_log_dir_never_share_files(tmp_path, scope):
    from speedysvc.serve import new_scope
    from supervisor_harness import Supervisor
    other_scope = new_scope()
    first = Supervisor(tmp_path / "one", scope, {"Work": {}})
    second = Supervisor(tmp_path / "two", other_scope, {"Work": {}})
    second.env["XDG_RUNTIME_DIR"] = first.env["XDG_RUNTIME_DIR"]
    second.runtime_dir = first.runtime_dir
    shared = str(tmp_path / "shared-logs")
    for sup in (first, second):  # the same .ini content, as two copies of it would be
        with open(sup.ini) as f:
            text = f.read()
        with open(sup.ini, "w") as f:
            f.write(text.replace(f"log_dir = {sup.log_dir}", f"log_dir = {shared}"))
    try:
        first.start()
        second.start()
        assert os.path.exists(os.path.join(shared, "work.log"))          # the first writes here
        assert os.path.exists(os.path.join(shared, other_scope, "work.log"))  # the second apart
        assert os.path.exists(os.path.join(shared, other_scope, "metrics.sqlite"))
        assert f"log_dir {shared} is in use by another running supervisor" in second.log_text()
        with open(os.path.join(shared, "work.log")) as f:
            pids = {__import__("json").loads(line)["pid"] for line in f if line.strip()}
        assert not pids & set(second.pids("work"))
    finally:
        second.cleanup()
        first.cleanup()
        naming.sweep(other_scope)
