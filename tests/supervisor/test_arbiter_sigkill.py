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
