"""What a user sees when the .ini file is wrong or the services cannot boot: every problem at
once, exit 78 for configuration, 70 for a boot failure, and nothing left running."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from supervisor_harness import HERE, REPO, dedent

BAD_INI = dedent("""
    [supervisor]
    scope = {scope}

    [web monitor]
    enabled = false

    [defaults]
    log_dir = {log_dir}
    min_proc_nmu = 2

    [Work]
    import_from = supervisor_services
    min_proc_num = 3
    max_proc_num = 2
    max_proc_mem_bytes = lots

    [Other]
    import_from = no_such_module_anywhere

    [NotAService]
    import_from = supervisor_services

    [Second]
    min_proc_num = 1
""")


def run_cli(*args, env_extra=None, timeout=60):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, REPO]))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "speedysvc", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def bad_ini(tmp_path, scope):
    path = tmp_path / "bad.ini"
    path.write_text(BAD_INI.format(scope=scope, log_dir=tmp_path / "logs"))
    return str(path)


@pytest.mark.parametrize("mode", [["--check-config"], []], ids=["check-config", "run"])
def test_every_config_error_is_reported_at_once_with_exit_78(bad_ini, scope, tmp_path, mode):
    result = run_cli(bad_ini, *mode)
    assert result.returncode == 78, result.stderr
    err = result.stderr
    # unknown key with a did-you-mean hint
    assert "[defaults] min_proc_nmu" in err and "did you mean 'min_proc_num'" in err
    # a value of the wrong type, naming what was expected and found
    assert "[Work] max_proc_mem_bytes" in err and "'lots'" in err and "byte size" in err
    # a cross-option check
    assert "min_proc_num" in err and "max_proc_num" in err
    # a module that does not import, a class that is not a service, a missing import_from
    assert "[Other] import_from" in err and "no_such_module_anywhere" in err
    assert "[NotAService] import_from" in err and "ServerMethodsBase" in err
    assert "[Second] import_from" in err
    assert "6 configuration error(s)" in err
    # nothing started: no state file, no shared memory
    assert not os.path.exists(tmp_path / "xdg")
    from speedysvc import naming
    assert naming.list_objects(scope) == []


def test_check_config_accepts_a_valid_file_and_print_config_masks_secrets(tmp_path, scope):
    ini = tmp_path / "good.ini"
    ini.write_text(dedent(f"""
        [supervisor]
        scope = {scope}
        [web monitor]
        enabled = false
        [Work]
        import_from = supervisor_services
        tcp_bind = 127.0.0.1:0
        tcp_secret = hunter2-very-secret
    """))
    ok = run_cli("run", str(ini), "--check-config")
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK" in ok.stdout and "Work" in ok.stdout
    printed = run_cli(str(ini), "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert "hunter2-very-secret" not in printed.stdout
    assert "tcp_secret = ********" in printed.stdout


def test_a_syntax_error_is_a_config_error(tmp_path):
    ini = tmp_path / "broken.ini"
    ini.write_text("[Work]\nimport_from supervisor_services\n")
    result = run_cli(str(ini), "--check-config")
    assert result.returncode == 78
    assert "line 2" in result.stderr


def test_missing_file_is_a_config_error(tmp_path):
    result = run_cli(str(tmp_path / "nope.ini"))
    assert result.returncode == 78
    assert "nope.ini" in result.stderr


def test_a_service_that_cannot_boot_fails_the_supervisor_with_exit_70(make_supervisor):
    sup = make_supervisor({"CrashOnStart": {}, "Work": {}},
                          defaults={"crash_loop_restarts": "3", "restart_backoff_initial": "50ms"})
    sup.start(wait=False)
    code = sup.proc.wait(60)
    out = sup.log_text()
    assert code == 70, out
    assert "crashy cannot open its database" in out          # why, from the worker's stderr
    assert "crash loop" in out
    assert "wait_until_completed" in out
    # the service after it never started
    with open(os.path.join(sup.marks_dir, "marks.txt")) as f:
        marks = f.read()
    assert marks.count("crashy-start") == 3
    assert not os.path.exists(sup.state_path())


def test_a_second_supervisor_of_the_same_scope_is_refused(make_supervisor):
    first = make_supervisor({"Work": {}}).start()
    second = subprocess.run([sys.executable, "-m", "speedysvc", first.ini], cwd=REPO, env=first.env,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 70
    assert "already running" in second.stderr and str(first.proc.pid) in second.stderr
    assert first.service("work")["status"] == "running"   # the first one is unharmed
    assert first.state()["pid"] == first.proc.pid         # and so is its state file
    assert first.stop() == 0


def test_the_shipped_example_ini_is_valid():
    result = run_cli(os.path.join(REPO, "example.ini"), "--check-config")
    assert result.returncode == 0, result.stderr
    assert "Echo" in result.stdout and "Calculator" in result.stdout
