"""Every Python block of the README runs as shown.

Blocks are taken from README.md in order. A block preceded by `<!-- snippet: file NAME -->` is
saved as NAME (the README tells the reader to save it); one preceded by
`<!-- snippet: needs-supervisor SECTION ... -->` runs while a real supervisor serves those
sections of example.ini; every other Python block runs as it is, in a fresh interpreter whose
working directory holds the saved files. Each block's `# comment` after a print() is the
output the README promises, and is checked.
"""
from __future__ import annotations

import configparser
import os
import pathlib
import re
import subprocess
import sys

import pytest

from speedysvc import naming

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "supervisor"))
from supervisor_harness import Supervisor  # noqa: E402

_BLOCK = re.compile(r"(?:<!-- snippet: (?P<marker>[^>]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return [((m.group("marker") or "").strip(), m.group("code")) for m in _BLOCK.finditer(text)]


def promised_output(code: str) -> list[str]:
    """The `# ...` comment of each print(...) line: what the README says it prints."""
    promised = []
    for line in code.splitlines():
        m = re.match(r"\s*print\(.*\)\s+#\s*(.+)$", line)
        if m:
            promised.append(m.group(1).split(" (")[0].strip())
    return promised


def _run(code: str, workdir: pathlib.Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=120)


def _check_output(code: str, result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"README block failed:\n{code}\n{result.stderr}"
    printed = result.stdout.splitlines()
    promised = promised_output(code)
    assert len(printed) >= len(promised), (printed, promised)
    for got, want in zip(printed, promised, strict=False):  # printed may go on past the promise
        if "..." in want:
            assert got.startswith(want.split("...")[0].rstrip(" ,")), (got, want)
        else:
            assert got == want, f"README promises {want!r}, the block printed {got!r}"


def _environment(tmp_path: pathlib.Path) -> dict:
    env = dict(os.environ)
    env.pop("SPEEDYSVC_SCOPE", None)
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "xdg")  # this test's supervisors only
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "work"), str(ROOT)])
    return env


def test_the_readme_has_the_blocks_this_test_expects():
    markers = [marker for marker, _ in readme_blocks()]
    assert "file echo_service.py" in markers
    assert any(m.startswith("needs-supervisor") for m in markers)
    assert len(markers) >= 3


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_python_block_runs_as_shown(index, tmp_path, scope):
    blocks = readme_blocks()
    workdir = tmp_path / "work"
    workdir.mkdir()
    for marker, code in blocks:  # files the README asks the reader to save
        if marker.startswith("file "):
            (workdir / marker.split(None, 1)[1]).write_text(code)
    marker, code = blocks[index]
    env = _environment(tmp_path)
    if marker.startswith("file "):
        result = _run(f"import {marker.split()[1].removesuffix('.py')}", workdir, env)
        assert result.returncode == 0, result.stderr
        return
    if marker.startswith("needs-supervisor"):
        sections = marker.split()[1:]
        sup = _example_supervisor(tmp_path, scope, sections, env)
        try:
            _check_output(code, _run(code, workdir, env))
        finally:
            sup.cleanup()
        return
    before = set(naming.list_objects("default"))
    _check_output(code, _run(code, workdir, env))
    assert set(naming.list_objects("default")) <= before, "the README block left shared memory"


def _example_supervisor(tmp_path: pathlib.Path, scope: str, sections: list[str], env: dict) -> Supervisor:
    """A supervisor serving `sections` exactly as example.ini configures them."""
    example = configparser.ConfigParser(interpolation=None)
    example.read(ROOT / "example.ini")
    services = {name: {k: v for k, v in example[name].items() if k not in example.defaults()}
                for name in sections}
    sup = Supervisor(tmp_path, scope, services)
    sup.env.update({k: env[k] for k in ("XDG_RUNTIME_DIR",)})
    sup.runtime_dir = os.path.join(env["XDG_RUNTIME_DIR"], "speedysvc")
    return sup.start()
