"""engine / ray_address options and the ray:// address, without a Ray cluster."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from speedysvc.client import _parse_address
from speedysvc.supervisor.config import ConfigError, load_config

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def write(tmp_path, text: str) -> str:
    path = tmp_path / "svc.ini"
    path.write_text(textwrap.dedent(text))
    return str(path)


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speedysvc", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_options_without_meaning_on_ray_are_warnings_not_errors(tmp_path):
    ini = write(tmp_path, """
        [supervisor]
        engine = ray
        [defaults]
        worker_hang_timeout = 5s
        [Echo]
        import_from = speedysvc.examples
        tcp_bind = 127.0.0.1
        [Calculator]
        import_from = speedysvc.examples
        engine = local
        tcp_bind = 127.0.0.1:5999
        """)
    out = run(ini, "--check-config")
    assert out.returncode == 0, out.stderr
    warnings = [row for row in out.stderr.splitlines() if "warning" in row]
    assert any("[Echo] tcp_bind" in w and "ignored on Ray" in w for w in warnings)
    assert any("[defaults] worker_hang_timeout" in w for w in warnings)
    assert not any("[Calculator]" in w for w in warnings)   # engine = local: TCP means something
    config = load_config(ini)
    assert [s.engine for s in config.services] == ["ray", "local"]


def test_the_engine_flag_sets_the_default_engine(tmp_path):
    ini = write(tmp_path, """
        [Echo]
        import_from = speedysvc.examples
        [Calculator]
        import_from = speedysvc.examples
        engine = local
        """)
    env = {k: v for k, v in os.environ.items() if k != "SPEEDYSVC_ENGINE"}
    plain = subprocess.run([sys.executable, "-m", "speedysvc", ini, "--print-config"], cwd=REPO,
                           capture_output=True, text=True, timeout=60, env=env)
    assert "[Echo]" in plain.stdout and "engine = ray" not in plain.stdout
    flagged = subprocess.run([sys.executable, "-m", "speedysvc", "--engine", "ray", ini,
                              "--print-config"], cwd=REPO, capture_output=True, text=True,
                             timeout=60, env=env)
    assert flagged.returncode == 0, flagged.stderr
    echo = flagged.stdout.split("[Echo]")[1].split("[Calculator]")[0]
    calculator = flagged.stdout.split("[Calculator]")[1]
    assert "engine = ray" in echo and "engine = local" in calculator


def test_a_bad_ray_address_is_a_configuration_error(tmp_path):
    ini = write(tmp_path, """
        [supervisor]
        ray_address = somewhere
        [Echo]
        import_from = speedysvc.examples
        """)
    with pytest.raises(ConfigError, match=r"\[supervisor\] ray_address: expected local, auto"):
        load_config(ini)


def test_ray_is_not_imported_unless_chosen(tmp_path):
    ini = write(tmp_path, """
        [Echo]
        import_from = speedysvc.examples
        """)
    code = textwrap.dedent(f"""
        import sys, speedysvc, speedysvc.cli, speedysvc.supervisor.arbiter
        from speedysvc.supervisor.config import load_config
        load_config({ini!r})
        assert "ray" not in sys.modules, "ray was imported"
        print("no ray")
        """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=60, env={k: v for k, v in os.environ.items()
                                          if k != "SPEEDYSVC_ENGINE"})
    assert out.returncode == 0 and "no ray" in out.stdout, out.stderr


@pytest.mark.parametrize("address, expected", [
    ("ray://", {"address": None, "scope": None}),
    ("ray:///s1", {"address": None, "scope": "s1"}),
    ("ray://10.0.0.5:10001", {"address": "10.0.0.5:10001", "scope": None}),
    ("ray://127.0.0.1:6379/s1", {"address": "127.0.0.1:6379", "scope": "s1"}),
])
def test_ray_addresses(address, expected):
    assert _parse_address(address) == ("ray", expected)


def test_example_ini_checks_on_either_engine():
    local = run("example.ini", "--check-config", env={"SPEEDYSVC_ENGINE": ""})
    assert local.returncode == 0 and "ignored on Ray" not in local.stderr, local.stderr
    ray = run("--engine", "ray", "example.ini", "--check-config")
    assert ray.returncode == 0, ray.stderr
    assert "[Echo] tcp_bind" in ray.stderr and "configuration OK" in ray.stdout
    # the device simulator binds local ports: example.ini keeps it local under --engine ray
    assert "[DeviceSimulatorService]" not in ray.stderr
