"""Two deployments of one .ini (two directories, two supervisors): a TCP port the first one
serves is refused to the second, naming the port and its holder, instead of being shared
through SO_REUSEPORT with the kernel splitting one deployment's callers between the two."""
from __future__ import annotations

import socket

import speedysvc
from speedysvc import naming
from speedysvc.serve import new_scope
from supervisor_harness import Supervisor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_second_deployment_on_the_same_port_is_refused_naming_the_holder(make_supervisor, tmp_path):
    port = free_port()
    services = {"Work": {"tcp_bind": f"127.0.0.1:{port}"}}
    first = make_supervisor(services).start()
    assert first.service("work")["status"] == "running"
    other_scope = new_scope()
    second = Supervisor(tmp_path / "copy", other_scope, services)
    try:
        second.start(wait=False)
        assert second.proc.wait(40) != 0  # a boot failure: the service it must start cannot
        log = second.log_text()
        assert f"could not listen on 127.0.0.1:{port}" in log and "held by" in log
        assert first.ini in log and f"--scope {first.scope}" in log  # the holder, by its deployment
        with speedysvc.connect("work", f"tcp://127.0.0.1:{port}") as c:  # all calls reach the first
            pids = {c.ping() for _ in range(20)}
        assert pids <= set(first.pids("work"))
    finally:
        second.cleanup()
        left = naming.list_objects(other_scope)
        naming.sweep(other_scope)
    assert left == []
