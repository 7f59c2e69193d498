"""python -m web_monitor.passwords and python -m web_monitor, as real processes."""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from werkzeug.security import check_password_hash

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], stdin: str = "", env: dict[str, str] | None = None):
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True,
                          cwd=REPO, timeout=60, env={**clean_env(), **(env or {})})


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPEEDYSVC_MONITOR_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_passwords_makes_a_salted_hash():
    result = run(["-m", "web_monitor.passwords", "--stdin"], stdin="a long secret\n")
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert check_password_hash(hashed, "a long secret")
    assert "password_hash = " in result.stderr
    second = run(["-m", "web_monitor.passwords", "--stdin"], stdin="a long secret\n").stdout.strip()
    assert second != hashed  # salted


def test_passwords_refuses_short_ones():
    result = run(["-m", "web_monitor.passwords", "--stdin"], stdin="short\n")
    assert result.returncode == 2 and "at least 8 characters" in result.stderr


def test_monitor_refuses_public_host_without_password():
    result = run(["-m", "web_monitor", "--host", "0.0.0.0", "--port", str(free_port()),
                  "--scope", "nothing"])
    assert result.returncode == 2
    assert "Refusing to serve the web monitor on '0.0.0.0' without a password" in result.stderr


def test_monitor_without_a_target_and_no_supervisor_running_says_what_to_do(tmp_path):
    result = run(["-m", "web_monitor"], env={"XDG_RUNTIME_DIR": str(tmp_path), "SPEEDYSVC_SCOPE": ""})
    assert result.returncode == 2
    assert "no running supervisor" in result.stderr
    assert "--scope SCOPE or --control ADDRESS" in result.stderr


def test_monitor_reads_ini_and_refuses_a_plain_password(tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text("[web monitor]\nhost = 0.0.0.0\npassword_hash = hunter2\n")
    result = run(["-m", "web_monitor", "--ini", str(ini), "--scope", "x"])
    assert result.returncode == 2 and "not a salted hash" in result.stderr


def test_monitor_serves_and_stops_on_sigterm():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "web_monitor", "--port", str(port), "--control",
                             "tcp://127.0.0.1:1"], cwd=REPO, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        line = ""
        while "web monitor on" not in line:
            assert time.monotonic() < deadline, "monitor did not report its address"
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                assert line or proc.poll() is None, proc.stderr.read()
        assert f"http://127.0.0.1:{port}/" in line
        # No supervisor behind that address: /health says so instead of hanging or crashing.
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30)
        assert caught.value.code == 503
        body = json.loads(caught.value.read())
        assert body["ok"] is False and "supervisor" in body["error"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
