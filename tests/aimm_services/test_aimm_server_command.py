"""The `aimm-server` command: which script it is, configuration errors, its own supervisor
(seen by `speedysvc status`), the `log` section, wss with server.pem_file, several controls.
"""
import json
import shutil
import ssl
import subprocess
import sys

import yaml
from hat import juggler

from aimm_server_process import (DIGEST, USER, free_port, run_coroutine, running_server, server_command,
                                 write_config)
from aimm_services.server import scope_for
from waiting import wait_until


def login_works(url, **options):
    async def scenario():
        client = await juggler.connect(url, **options)
        try:
            return await client.send("login", {"username": USER, "password": DIGEST})
        finally:
            await client.async_close()
    return run_coroutine(scenario(), 60) == {"success": True}


def test_aimm_server_on_path_is_this_projects_script():
    """The published aimm package installs an aimm-server too; after the README's
    `pip install -e '.[test]'` the one on PATH must be this project's."""
    found = shutil.which("aimm-server")
    assert found, "no aimm-server on PATH: pip install -e '.[test]'"
    done = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=60)
    assert "aimm_services.server" in done.stdout, (
        f"{found} is not this project's aimm-server (is it the published aimm's?); "
        f"reinstall the project: pip install -e '.[test]'\n{done.stdout}{done.stderr}")


def test_configuration_errors_name_the_key_and_start_nothing(tmp_path):
    conf = write_config(tmp_path, port=free_port())
    data = yaml.safe_load(conf.read_text())
    del data["name"]
    data["control"][0].pop("server")
    data["engine"]["max_children"] = "many"
    data["plugin"] = data.pop("plugins")
    conf.write_text(yaml.safe_dump(data))
    done = subprocess.run(server_command(conf, tmp_path / "logs"), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 78, done.stderr
    for expected in (f"{conf}: engine.max_children: expected a number >= 1, found str 'many'",
                     f"{conf}: plugin: unknown key (did you mean 'plugins'?)",
                     f"{conf}: plugins: expected a mapping"):
        assert expected in done.stderr, done.stderr
    data["plugins"] = data.pop("plugin")
    data["engine"]["max_children"] = 2
    conf.write_text(yaml.safe_dump(data))
    done = subprocess.run(server_command(conf, tmp_path / "logs"), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 78, done.stderr
    assert f"{conf}: name: expected a string" in done.stderr
    assert f"{conf}: control[0].server: expected a mapping {{host, port}}" in done.stderr
    assert not (tmp_path / "logs" / "aimm-server.ini").exists()


def test_check_config_names_the_scope(tmp_path):
    conf = write_config(tmp_path, port=free_port(), name="my server")
    done = subprocess.run(server_command(conf, tmp_path / "logs", "--check-config"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"scope {scope_for('my server')}" in done.stdout


def test_speedysvc_status_sees_every_service_of_two_controls(tmp_path):
    second_port = free_port()
    with running_server(tmp_path) as server:
        status = server.speedysvc("status", "--json")
        assert status.returncode == 0, status.stderr
        names = {s["name"]: s["status"] for s in json.loads(status.stdout)["services"]}
        assert names == {"aimm_plugins": "running", "aimm_backend": "running",
                         "aimm_engine": "running", "aimm_repl": "running"}
        supervisor = json.loads(status.stdout)["supervisor"]
        assert not supervisor.get("web_monitor"), supervisor     # off unless configured
        logs = server.speedysvc("logs", "aimm_repl", "-n", "50")
        assert f"listening on ws://127.0.0.1:{server.port}/ws" in logs.stdout
        assert (server.log_dir / "aimm-server.ini").exists()
        # a second control entry: another service, another port
        data = yaml.safe_load(server.conf.read_text())
        data["control"].append({**data["control"][0],
                                "server": {"host": "127.0.0.1", "port": second_port}})
        server.conf.write_text(yaml.safe_dump(data))
        server.stop()
        server.start()
        wait_until(lambda: server.speedysvc("status", "aimm_repl_1").returncode == 0,
                   timeout=30, message="the second REPL control to run")
        assert login_works(server.url)
        assert login_works(f"ws://127.0.0.1:{second_port}/ws")


def test_log_section_goes_to_dictconfig(tmp_path):
    log_file = tmp_path / "aimm.log"
    log = {"version": 1, "disable_existing_loggers": False,
           "formatters": {"plain": {"format": "%(process)d %(name)s: %(message)s"}},
           "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file),
                                 "formatter": "plain"}},
           "root": {"level": "INFO", "handlers": ["file"]}}
    with running_server(tmp_path, log=log):
        wait_until(lambda: log_file.exists() and "AIMM REPL control listening" in
                   log_file.read_text(), timeout=30, message="the control's log record")
        wait_until(lambda: "AIMM engine" in log_file.read_text(), timeout=30,
                   message="the engine worker's log record")


def test_log_section_without_version_goes_to_basicconfig(tmp_path):
    log_file = tmp_path / "basic.log"
    log = {"level": "INFO", "filename": str(log_file), "format": "basic %(message)s"}
    with running_server(tmp_path, log=log):
        wait_until(lambda: log_file.exists() and "basic AIMM engine" in log_file.read_text(),
                   timeout=30, message="the engine's log record in the basicConfig file")


def test_wss_with_pem_file(tmp_path):
    pem = tmp_path / "server.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    pem.write_text((tmp_path / "cert.pem").read_text() + (tmp_path / "key.pem").read_text())
    with running_server(tmp_path, control_extra={"pem_file": "server.pem"}) as server:
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        assert login_works(f"wss://127.0.0.1:{server.port}/ws", ssl_ctx=context)


def test_python_m_runs_the_same_server(tmp_path):
    done = subprocess.run([sys.executable, "-m", "aimm_services.server", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--conf" in done.stdout


def test_generated_supervisor_file_is_valid_with_and_without_web_monitor(tmp_path):
    from aimm_services.config import load_config as load_aimm
    from aimm_services.server import supervisor_ini
    from speedysvc.supervisor.config import load_config as load_ini

    conf = load_aimm(write_config(tmp_path, port=free_port(), name="ini check"))
    for web_monitor in (None, ("127.0.0.1", 5199)):
        path = tmp_path / "aimm-server.ini"
        path.write_text(supervisor_ini(conf, scope_for("ini check"), tmp_path / "logs",
                                       web_monitor))
        ini = load_ini(path)
        assert ini.supervisor.scope == scope_for("ini check")
        assert [s.name for s in ini.services] == ["PluginService", "BackendService",
                                                  "EngineService", "ReplControlService"]
        assert ini.web_monitor.enabled is (web_monitor is not None)
        if web_monitor:
            assert ini.web_monitor.port == 5199


def test_a_control_port_in_use_stops_the_server_with_the_reason(tmp_path):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = write_config(tmp_path, port=port)
        done = subprocess.run(server_command(conf, tmp_path / "logs"), capture_output=True,
                              text=True, timeout=180)
    assert done.returncode == 70, done.stderr[-2000:]        # speedysvc's boot failure
    assert f"('127.0.0.1', {port}): address already in use" in done.stderr
    assert "aimm_repl failed to start" in done.stderr
