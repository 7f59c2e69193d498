"""A service that cannot start says why where the user looks: the console, `status`, and
`speedysvc logs -c FILE` after the supervisor has stopped."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from supervisor_harness import REPO, wait_until


def test_a_crash_at_start_shows_its_traceback_on_the_console_and_in_status(make_supervisor):
    sup = make_supervisor({"Work": {}, "CrashOnStart": {"wait_until_completed": "false"}},
                          defaults={"crash_loop_restarts": "2"})
    sup.start()
    wait_until(lambda: sup.service("crashy")["status"] == "failed", 30,
               message="crashy to be marked failed")
    console = sup.log_text()
    assert "Traceback (most recent call last)" in console
    assert 'raise RuntimeError("crashy cannot open its database")' in console
    assert "supervisor_services.py" in console  # file and line of the user's code

    status = json.loads(sup.cli("status", "--json", "-c", sup.ini).stdout)
    crashy = next(s for s in status["services"] if s["name"] == "crashy")
    assert "supervisor_services.py" in crashy["last_traceback"]
    assert crashy["last_traceback"].rstrip().endswith("RuntimeError: crashy cannot open its database")
    text = sup.cli("status", "-c", sup.ini).stdout
    assert "Traceback (most recent call last)" in text and "in on_start" in text


def test_logs_of_a_stopped_deployment_are_read_from_its_files(make_supervisor):
    sup = make_supervisor({"Work": {}, "CrashOnStart": {"wait_until_completed": "false"}},
                          defaults={"crash_loop_restarts": "2"})
    sup.start()
    wait_until(lambda: sup.service("crashy")["status"] == "failed", 30,
               message="crashy to be marked failed")
    assert sup.stop() == 0
    result = sup.cli("logs", "-c", sup.ini, "crashy", "--level", "ERROR")
    assert result.returncode == 0, result.stderr
    assert "crashy cannot open its database" in result.stdout
    by_section = sup.cli("logs", "-c", sup.ini, "CrashOnStart", "-n", "500")
    assert "crashy cannot open its database" in by_section.stdout
    supervisor_log = sup.cli("logs", "-c", sup.ini, "speedysvc-supervisor", "-n", "500")
    assert "supervisor stopped" in supervisor_log.stdout
    unknown = sup.cli("logs", "-c", sup.ini, "nosuch")
    assert unknown.returncode != 0 and "no service named 'nosuch'" in unknown.stderr


def test_a_module_that_fails_to_import_is_named_with_file_and_line(tmp_path):
    (tmp_path / "broken_module.py").write_text("import os\n\nvalue = 1\nraise RuntimeError('no database here')\n")
    ini = tmp_path / "broken.ini"
    ini.write_text(f"[supervisor]\npython_path = {tmp_path}\n[web monitor]\nenabled = false\n"
                   f"[defaults]\nlog_dir = {tmp_path}/logs\n[Broken]\nimport_from = broken_module\n")
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "xdg"))
    result = subprocess.run([sys.executable, "-m", "speedysvc", "--check-config", str(ini)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert "RuntimeError: no database here" in result.stderr
    assert f"{tmp_path}/broken_module.py, line 4" in result.stderr


def test_a_web_monitor_port_in_use_is_named_and_not_retried(make_supervisor):
    import socket
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        sup = make_supervisor({"Work": {}}, web_monitor={"enabled": "true", "port": str(port)})
        sup.start()
        wait_until(lambda: "cannot start" in sup.log_text(), 30,
                   message="the supervisor to report the web monitor's failure")
        text = sup.log_text()
        assert f"port {port} on 127.0.0.1 is already in use" in text
        assert f"pid {os.getpid()}" in text  # who holds it
        assert "not retrying" in text
        # the failure is reported as soon as the monitor exits; the old code scheduled a retry then
        assert "restarting it in" not in text
        assert sup.status()["supervisor"]["web_monitor"] is None
    finally:
        holder.close()
