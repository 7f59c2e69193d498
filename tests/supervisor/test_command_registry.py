"""One registry of control verbs makes the control service's methods, the CLI's subcommands
and the web monitor's client (fast: no processes)."""
from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from speedysvc import cli
from speedysvc.methods import method_spec
from speedysvc.supervisor import commands
from speedysvc.supervisor.control_service import ControlService
from web_monitor.control import LazyControl


def test_every_command_is_a_control_service_method_with_its_parameters():
    for cmd in commands.COMMANDS.values():
        method = getattr(ControlService, cmd.name)
        spec = method_spec(method)
        assert spec is not None and spec.encoder == "msgpack", cmd.name
        assert list(inspect.signature(method).parameters)[1:] == [p.name for p in cmd.params]


def test_every_command_is_a_cli_subcommand():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    for cmd in commands.COMMANDS.values():
        assert cmd.name.replace("_", "-") in sub.choices, cmd.name


def test_a_generic_cli_subcommand_parses_the_registry_parameters():
    args = cli.build_parser().parse_args(["restart-worker", "echo", "3", "--scope", "x"])
    assert (args.func, args.command, args.name, args.worker_id) == (cli.cmd_generic, "restart_worker",
                                                                    "echo", 3)
    args = cli.build_parser().parse_args(["metrics", "echo", "--since", "12.5"])
    assert (args.since, args.until) == (12.5, None)


def test_the_monitor_client_offers_exactly_the_registry():
    control = LazyControl("shm://nothing")
    for name in commands.COMMANDS:
        assert callable(getattr(control, name))
    with pytest.raises(AttributeError):
        control.shutdown_the_machine  # noqa: B018 - not a verb of the registry


def test_arguments_are_converted_and_defaults_applied():
    cmd = commands.COMMANDS["logs"]
    assert cmd.convert(("echo",), {"lines": "5", "level": "warning"}) == ("echo", 5, None, "WARNING", None)
    with pytest.raises(TypeError):
        commands.COMMANDS["scale"].convert(("echo",), {})  # n is required


class _FakeArbiter:
    def __init__(self, phase: str):
        self.phase = phase
        self.pool = SimpleNamespace(name="echo", status="running", has_workers=True,
                                    scale=lambda n: (True, f"scaled to {n}"),
                                    stop=lambda: "stopping echo")
        self.collector = SimpleNamespace(stopped=lambda name: None)

    def lookup(self, name: str):
        if name != "echo":
            raise commands.UnknownService(f"no service named {name!r}")
        return self.pool


def test_steering_is_refused_while_stopping_but_stop_is_not():
    arbiter = _FakeArbiter("stopping")
    assert commands.run(arbiter, "scale", ("echo", 2)) == {
        "ok": False, "message": "the supervisor is shutting down"}
    assert commands.run(arbiter, "stop", ("echo",))["message"] == "stopping echo"
    with pytest.raises(commands.UnknownService):   # an unknown name is still said first
        commands.run(arbiter, "scale", ("nope", 2))
    assert commands.run(_FakeArbiter("running"), "scale", ("echo", 2)) == {
        "ok": True, "message": "scaled to 2"}
