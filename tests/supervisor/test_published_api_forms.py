"""Clients written to the published speedysvc API reach a supervisor's services unchanged.

Each test starts `python -m speedysvc FILE.ini` as a subprocess and runs the client code in
another Python process, as a user would: no scope in the address (found through the
supervisor's state file), no serve(), no fixture-made client.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from speedysvc import naming
from speedysvc.serve import new_scope
from supervisor_harness import HERE, REPO, Supervisor, wait_until

GREETER = {"Greeter": {"tcp_bind": "127.0.0.1"}, "Postman": {}}

# Every form of the published API, over shared memory and TCP; prints one JSON line.
CLIENT_FORMS = textwrap.dedent('''
    import json, sys
    from speedysvc import ClientMethodsBase, NetworkClient, SHMClient, connect
    from supervisor_services import Greeter, Postman

    class GreeterClient(ClientMethodsBase):
        greet = Greeter.greet.as_rpc()
        add = Greeter.add.as_rpc()

        def reverse(self, data):
            return self.send(Greeter.reverse, data)        # raw: bytes given directly

        def shout(self, who):
            return self.send(Greeter.greet, [who.upper(), "!!"])

        def by_name(self, who):
            return self.send("greet", [who], {"punctuation": "?"})

    out = {}
    c = connect(Greeter, "shm://")
    out["connect"] = c.greet("ann")
    out["connect_kw"] = c.greet("ann", punctuation=".")
    out["connect_send_fn"] = c.provider.send(Greeter.greet, ["bob"])
    out["connect_send_timeout"] = c.provider.send(Greeter.greet, ["bob"], 5)
    out["connect_send"] = c.send(Greeter.greet, ["bob"], timeout=5)
    postman = connect(Postman, "shm://")
    out["remote_send_wins"] = postman.send("x")
    out["helper_send_on_provider"] = postman.provider.send(Postman.send, ["y"])
    out["connect_by_name"] = connect("greeter", "shm://").greet("cy")
    providers = {
        "connect_shm": connect(Greeter, "shm://"),
        "connect_tcp": connect(Greeter, "tcp://127.0.0.1"),
        "shm_client": SHMClient(Greeter),
        "network_client": NetworkClient(Greeter, host="127.0.0.1"),
    }
    for label, provider in providers.items():
        g = GreeterClient(provider)
        out[label] = [g.greet("dee"), g.greet("dee", punctuation="?"), g.greet(who="eve"),
                      g.add(1), g.add(1, b=2), g.reverse(b"abc").decode(), g.shout("fay"),
                      g.by_name("gus")]
        out[label + "_send"] = provider.send(Greeter.add, [2, 3])
        g.close()
    with connect(Greeter, "shm://") as s:
        with s.provider.subscribe(["greeted"]) as events:
            s.greet("hal")
            out["event"] = events.get(timeout=10).payload
    print(json.dumps(out))
''')


def _run_client(sup: Supervisor, code: str, env: dict | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    environment = dict(sup.env)
    environment.pop("SPEEDYSVC_SCOPE", None)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def _supervisor(tmp_path, scope: str, services: dict, **kwargs) -> Supervisor:
    os.makedirs(tmp_path, exist_ok=True)
    return Supervisor(tmp_path, scope, services, **kwargs)


@pytest.fixture
def greeter_supervisor(tmp_path, scope):
    sup = _supervisor(tmp_path, scope, GREETER).start()
    yield sup
    sup.cleanup()


def test_every_published_form_works_from_another_process(greeter_supervisor):
    result = _run_client(greeter_supervisor, CLIENT_FORMS)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["connect"] == "hello ann!"
    assert out["connect_kw"] == "hello ann."
    assert out["connect_send_fn"] == out["connect_send_timeout"] == "hello bob!"
    assert out["connect_send"] == "hello bob!"
    assert out["remote_send_wins"] == "sent x"
    assert out["helper_send_on_provider"] == "sent y"
    assert out["connect_by_name"] == "hello cy!"
    expected = ["hello dee!", "hello dee?", "hello eve!", 11, 3, "cba", "hello FAY!!", "hello gus?"]
    for label in ("connect_shm", "connect_tcp", "shm_client", "network_client"):
        assert out[label] == expected, label
        assert out[label + "_send"] == 5, label
    assert out["event"] == {"who": "hal"}


def test_a_closed_client_and_a_clean_stop_leave_nothing_in_dev_shm(greeter_supervisor):
    code = textwrap.dedent('''
        import threading
        from speedysvc import connect, SHMClient
        from supervisor_services import Greeter
        c = connect(Greeter, "shm://")
        c.greet("a")
        t = threading.Thread(target=lambda: c.greet("b")); t.start(); t.join()
        s = SHMClient(Greeter); s.call("greet", ["c"])
        c.close(); s.close()
        print("closed", flush=True)
        input()  # stay alive, so nothing of ours is swept as a dead client's
    ''')
    environment = dict(greeter_supervisor.env)
    environment.pop("SPEEDYSVC_SCOPE", None)
    client = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=environment,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    scope = greeter_supervisor.scope
    try:
        assert client.stdout.readline().strip() == "closed", client.stderr.read()
        assert [o for o in naming.list_objects(scope) if f"_c{client.pid}x" in o] == []
    finally:
        client.communicate("\n", timeout=10)
    assert greeter_supervisor.stop() == 0
    wait_until(lambda: not naming.list_objects(scope), 10,
               message=f"every shared-memory object of {scope} to be removed")


def test_two_supervisors_serving_one_service_name_the_error_names_both(tmp_path, scope):
    # shared-memory only: a second deployment's TCP port would be refused (faults issue)
    other_scope = new_scope()
    first = _supervisor(tmp_path / "one", scope, {"Work": {}})
    second = _supervisor(tmp_path / "two", other_scope, {"Work": {}})
    second.env["XDG_RUNTIME_DIR"] = first.env["XDG_RUNTIME_DIR"]  # one user, one runtime dir
    second.runtime_dir = first.runtime_dir
    try:
        first.start()
        second.start()
        code = ("from speedysvc import connect\n"
                "from supervisor_services import Work\n"
                "connect(Work, 'shm://')\n")
        result = _run_client(first, code)
        assert result.returncode != 0
        assert "AmbiguousService" in result.stderr
        for sup in (first, second):
            assert f"scope {sup.scope}" in result.stderr and sup.ini in result.stderr
        assert f"shm://{scope}" in result.stderr or f"shm://{other_scope}" in result.stderr
        # the address that names the scope works
        ok = _run_client(first, code.replace("shm://", f"shm://{other_scope}")
                         + "print(connect(Work, 'shm://" + other_scope + "').ping())\n")
        assert ok.returncode == 0, ok.stderr
        assert int(ok.stdout.split()[-1]) in second.pids("work")
    finally:
        second.cleanup()
        first.cleanup()
        naming.sweep(other_scope)


def test_speedysvc_scope_overrides_the_supervisors_found(tmp_path, scope):
    sup = _supervisor(tmp_path, scope, {"Work": {}}).start()
    try:
        code = ("from speedysvc import connect, ServiceUnavailable\n"
                "from supervisor_services import Work\n"
                "try:\n"
                "    connect(Work, 'shm://', connect_timeout=0.5)\n"
                "    print('found')\n"
                "except ServiceUnavailable as exc:\n"
                "    print('unavailable', exc)\n")
        found = _run_client(sup, code)
        assert found.stdout.startswith("found"), found.stderr
        overridden = _run_client(sup, code, env={"SPEEDYSVC_SCOPE": "nosuchscope"})
        assert overridden.stdout.startswith("unavailable"), overridden.stderr
        assert "nosuchscope" in overridden.stdout
    finally:
        sup.cleanup()


def test_a_client_started_before_its_supervisor_finds_it(tmp_path, scope):
    sup = _supervisor(tmp_path, scope, {"Work": {}})
    code = ("from speedysvc import connect\n"
            "from supervisor_services import Work\n"
            "print(connect(Work, 'shm://', connect_timeout=40).ping())\n")
    environment = dict(sup.env)
    environment.pop("SPEEDYSVC_SCOPE", None)
    client = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sup.start()
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert int(out.split()[-1]) in sup.pids("work")
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        sup.cleanup()


def test_a_supervisor_with_its_own_runtime_dir_is_found(tmp_path, scope):
    sup = _supervisor(tmp_path, scope, {"Work": {}})
    elsewhere = str(tmp_path / "elsewhere-runtime")
    with open(sup.ini) as f:
        text = f.read()
    with open(sup.ini, "w") as f:
        f.write(text.replace("[supervisor]\n", f"[supervisor]\nruntime_dir = {elsewhere}\n", 1))
    sup.runtime_dir = elsewhere
    try:
        sup.start()
        code = ("from speedysvc import connect\n"
                "from supervisor_services import Work\n"
                "print(connect(Work, 'shm://', connect_timeout=5).ping())\n")
        result = _run_client(sup, code)
        assert result.returncode == 0, result.stderr
        assert int(result.stdout.split()[-1]) in sup.pids("work")
    finally:
        sup.cleanup()


assert HERE  # the harness puts tests/supervisor on the workers' path


def test_the_web_monitor_without_scope_watches_the_one_running_supervisor(greeter_supervisor):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environment = dict(greeter_supervisor.env)
    environment.pop("SPEEDYSVC_SCOPE", None)
    monitor = subprocess.Popen([sys.executable, "-m", "web_monitor", "--port", str(port)], cwd=REPO,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = monitor.stdout.readline()
        assert f"watching shm://{greeter_supervisor.scope}" in line, monitor.stderr.read()
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as response:
            assert json.loads(response.read())["ok"] is True
    finally:
        monitor.terminate()
        monitor.wait(15)
        monitor.stdout.close()
        monitor.stderr.close()
