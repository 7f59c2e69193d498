"""The .ini registry, converters and loader: what a user sees from --check-config and
--print-config."""
import os
import pickle
import subprocess
import sys
import textwrap
import uuid

import pytest
from hypothesis import given, settings, strategies as st

from speedysvc.supervisor import config as config_module
from speedysvc.supervisor import converters as c
from speedysvc.supervisor.config import ConfigError, config_diff, load_config
from speedysvc.supervisor.options import OPTIONS, SERVICE, markdown_table, options_for

# ---------------------------------------------------------------- converters


@pytest.mark.parametrize("text,value", [
    ("true", True), ("True", True), ("YES", True), ("on", True), ("1", True),
    ("false", False), ("No", False), (" off ", False), ("0", False)])
def test_boolean_accepts_the_usual_spellings(text, value):
    assert c.boolean(text) is value


def test_a_conversion_error_says_what_was_expected_and_found():
    with pytest.raises(ValueError) as e:
        c.boolean("maybe")
    assert str(e.value) == ("expected a boolean (true/false, yes/no, on/off, 1/0), "
                            "found 'maybe'")
    assert isinstance(e.value, c.ConversionError)
    assert e.value.found == "maybe"


@pytest.mark.parametrize("conv,ok,bad", [
    (c.positive_int, ["1", " 42 ", "1_000"], ["0", "-1", "1.5", "abc", ""]),
    (c.non_negative_int, ["0", "7"], ["-1", "x"]),
    (c.port_number, ["1", "65535"], ["0", "65536", "http"]),
    (c.bind_port, ["0", "5155"], ["-1", "70000"]),
    (c.fraction, ["0", "0.75", "1"], ["1.01", "-0.1", "nan", "half"]),
    (c.non_negative_float, ["0", "2.5"], ["-1", "inf", "x"]),
])
def test_number_converters_enforce_their_range(conv, ok, bad):
    for text in ok:
        conv(text)
    for text in bad:
        with pytest.raises(c.ConversionError):
            conv(text)


@pytest.mark.parametrize("text,size", [
    ("0", 0), ("1_000_000", 1_000_000), ("512MB", 512_000_000), ("512M", 512 * 2**20),
    ("1GiB", 2**30), ("1gib", 2**30), ("1.5G", int(1.5 * 2**30)), (" 10 kb ", 10_000),
    ("64KiB", 65536), ("2T", 2 * 2**40), ("100B", 100)])
def test_byte_size(text, size):
    assert c.byte_size(text) == size


@pytest.mark.parametrize("text", ["-1", "1.2.3", "10XB", "", "MB", "1__0", "1 2"])
def test_byte_size_rejects(text):
    with pytest.raises(c.ConversionError, match="byte size"):
        c.byte_size(text)


@pytest.mark.parametrize("text,seconds", [
    ("500ms", 0.5), ("2s", 2), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("1.5", 1.5),
    ("0", 0), ("2d", 172800), ("250us", 0.00025), ("1m 30s", 90), ("10", 10)])
def test_duration(text, seconds):
    assert c.duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-1", "5x", "m", "1h 2", "inf", "nan", "", "s5"])
def test_duration_rejects(text):
    with pytest.raises(c.ConversionError, match="duration"):
        c.duration(text)


@settings(database=None)
@given(st.integers(min_value=0, max_value=2**50))
def test_byte_size_format_round_trips(n):
    assert c.byte_size(c.format_byte_size(n)) == n


@settings(database=None)
@given(st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_duration_format_round_trips(seconds):
    assert c.duration(c.format_duration(seconds)) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("text,value", [
    ("", None), ("none", None), ("NONE", None), ("off", None),
    ("127.0.0.1", c.BindAddress("127.0.0.1", None)),
    ("0.0.0.0:5555", c.BindAddress("0.0.0.0", 5555)),
    ("[::1]:80", c.BindAddress("::1", 80)), ("::1", c.BindAddress("::1", None)),
    (":8000", c.BindAddress("127.0.0.1", 8000)),
    ("my-host.example.com:0", c.BindAddress("my-host.example.com", 0))])
def test_tcp_bind(text, value):
    assert c.tcp_bind(text) == value


@pytest.mark.parametrize("text", ["host:99999", "bad host", "a:b:c", "h:port", "-x-"])
def test_tcp_bind_rejects(text):
    with pytest.raises(c.ConversionError, match="host or host:port"):
        c.tcp_bind(text)


def test_bind_address_prints_as_written():
    assert str(c.BindAddress("::1", 80)) == "[::1]:80"
    assert c.format_tcp_bind(None) == "none"
    assert c.tcp_bind(c.format_tcp_bind(c.BindAddress("10.0.0.1", 9))) == ("10.0.0.1", 9)


def test_other_converters():
    assert c.log_level("warn") == "WARNING"
    assert c.log_level("Debug") == "DEBUG"
    assert c.python_module(" pkg.mod ") == "pkg.mod"
    assert c.scope("abc123") == "abc123"
    assert c.path("~/x") == os.path.expanduser("~/x")
    assert c.path_list("a:b\n c ") == ("a", "b", "c")
    assert c.one_of("none", "zlib")("ZLIB") == "zlib"
    for conv, text in [(c.log_level, "LOUD"), (c.python_module, "a..b"),
                       (c.python_module, "1a"), (c.python_module, "class.x"),
                       (c.scope, "a_b"), (c.scope, "x" * 25), (c.path, " "),
                       (c.one_of("none", "zlib"), "gzip"), (c.host, "under_score")]:
        with pytest.raises(c.ConversionError):
            conv(text)


def test_secret_value_is_usable_but_its_repr_is_masked():
    s = c.secret("hunter2")
    assert s == "hunter2" and str(s) == "hunter2"
    assert "hunter2" not in repr(s)


# ---------------------------------------------------------------- the registry


def test_every_option_is_complete_and_its_default_is_valid():
    seen = set()
    for o in OPTIONS:
        assert (o.section, o.name) not in seen
        seen.add((o.section, o.name))
        assert o.help and o.converter.expected and callable(o.converter.format)
        value = o.default_value()
        if value is not None:  # a default must survive its own checks and printing
            assert o.convert(o.format(value)) == value


def test_registry_has_the_documented_options():
    service = options_for(SERVICE)
    for name in ["import_from", "log_dir", "tcp_bind", "port", "min_proc_num", "max_proc_num",
                 "wait_until_completed", "force_insecure_serialisation", "max_proc_mem_bytes",
                 "tcp_secret", "tcp_max_frame_bytes", "tcp_compression", "scale_up_busy",
                 "scale_down_busy", "scale_interval", "scale_up_cooldown", "scale_down_cooldown",
                 "scale_step_max", "restart_backoff_initial", "restart_backoff_max",
                 "crash_loop_restarts", "crash_loop_window", "worker_hang_timeout",
                 "graceful_timeout", "start_timeout", "metrics_interval", "metrics_retention",
                 "log_max_bytes", "log_backups", "enabled"]:
        assert name in service, name
    assert set(options_for("web monitor")) >= {"host", "port", "enabled", "password_hash"}
    assert "scope" in options_for("supervisor")
    assert service["max_proc_num"].default_value() == (os.cpu_count() or 1)
    assert service["min_proc_num"].default_value() == 1
    assert service["tcp_secret"].secret and options_for("web monitor")["password_hash"].secret


def test_a_config_without_a_file_has_the_registry_defaults_and_the_overrides():
    from speedysvc.supervisor.config import ServiceConfig
    from supervisor_services import Work
    cfg = ServiceConfig.for_class(Work, min_proc_num=3, max_proc_num=3)
    assert (cfg.name, cfg.import_from, cfg.engine) == ("Work", "supervisor_services", "local")
    assert (cfg.min_proc_num, cfg.max_proc_num) == (3, 3)
    untouched = set(options_for(SERVICE)) - {"import_from", "engine", "min_proc_num", "max_proc_num"}
    for name in untouched:
        assert getattr(cfg, name) == options_for(SERVICE)[name].default_value(), name
    with pytest.raises(TypeError, match="min_proc"):
        ServiceConfig.for_class(Work, min_procs=2)


def test_bounds_are_part_of_the_expectation():
    option = options_for(SERVICE)["tcp_max_frame_bytes"]
    with pytest.raises(c.ConversionError) as e:
        option.convert("10")
    assert "at least 1KiB" in str(e.value)


def test_markdown_table_lists_every_option():
    table = markdown_table()
    lines = table.splitlines()
    assert lines[0] == "| Option | Section | Default | Meaning |"
    assert len(lines) == 2 + len(OPTIONS)
    for o in OPTIONS:
        assert f"`{o.name}`" in table
    assert "`CPU count`" in table


def test_options_module_prints_the_table():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-m", "speedysvc.supervisor.options"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == markdown_table()


# ---------------------------------------------------------------- loading

SERVICES_SOURCE = """
try:
    from speedysvc.methods import ServerMethodsBase
except Exception:  # the RPC core may not be importable while it is being written
    class ServerMethodsBase:
        pass

class EchoServer(ServerMethodsBase):
    name = "echo"
    port = 5555

class OtherServer(ServerMethodsBase):
    name = "other"
    port = 5556

class SamePortServer(ServerMethodsBase):
    name = "same"
    port = 5555

class SameNameServer(ServerMethodsBase):
    name = "echo"
    port = 5600

class NoPortServer(ServerMethodsBase):
    name = "noport"

class PlainClass:
    port = 5700
"""


@pytest.fixture
def mod(tmp_path, monkeypatch):
    """Name of a fresh importable module holding the service classes above."""
    name = f"svc_{uuid.uuid4().hex[:12]}"
    libdir = tmp_path / "lib"
    libdir.mkdir()
    (libdir / f"{name}.py").write_text(SERVICES_SOURCE)
    monkeypatch.syspath_prepend(str(libdir))
    return name


def write_ini(tmp_path, text, name="example.ini"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path, **kw):
    with pytest.raises(ConfigError) as e:
        load_config(path, **kw)
    return str(e.value).splitlines(), e.value.errors


SEED = """
# Flask web monitor related
[web monitor]
port=5155
host=127.0.0.1

[defaults]
log_dir=/tmp/test_server_logs/
tcp_bind=127.0.0.1
max_proc_num=1
min_proc_num=1
wait_until_completed=True
force_insecure_serialisation=False

[EchoServer]
import_from={mod}
"""


def test_the_seed_example_loads(tmp_path, mod):
    cfg = load_config(write_ini(tmp_path, SEED.format(mod=mod)))
    [svc] = cfg.services
    assert svc.name == "EchoServer" and svc.import_from == mod
    assert svc.log_dir == "/tmp/test_server_logs"
    assert svc.tcp_bind == c.BindAddress("127.0.0.1", None)
    assert svc.port == 5555  # from the class
    assert svc.tcp_address == "tcp://127.0.0.1:5555"
    assert (svc.min_proc_num, svc.max_proc_num) == (1, 1)
    assert svc.wait_until_completed is True and svc.force_insecure_serialisation is False
    assert svc.scale_up_busy == 0.75 and svc.log_backups == 5  # built-in defaults
    assert (cfg.web_monitor.host, cfg.web_monitor.port) == ("127.0.0.1", 5155)
    assert cfg.path == str(tmp_path / "example.ini")
    assert svc.service_class().__name__ == "EchoServer"
    assert cfg.warnings == []


def test_service_sections_override_defaults_and_keep_file_order_and_case(tmp_path, mod):
    cfg = load_config(write_ini(tmp_path, f"""
        [defaults]
        max_proc_num = 4
        log_dir = logs
        [OtherServer]
        import_from = {mod}
        max_proc_num = 2
        Min_Proc_Num = 2
        [EchoServer]
        import_from = {mod}
        """))
    assert [s.name for s in cfg.services] == ["OtherServer", "EchoServer"]
    other, echo = cfg.services
    assert (other.min_proc_num, other.max_proc_num) == (2, 2)
    assert (echo.min_proc_num, echo.max_proc_num) == (1, 4)
    # relative paths are relative to the .ini file, not to wherever the supervisor was started
    assert echo.log_dir == str(tmp_path / "logs")
    assert cfg.supervisor.log_dir == str(tmp_path / "logs")
    assert echo.port == 5555 and echo.tcp_bind is None and echo.tcp_address is None
    assert cfg.service("EchoServer") is echo
    with pytest.raises(KeyError):
        cfg.service("Nope")


def test_special_sections_match_case_insensitively(tmp_path, mod):
    cfg = load_config(write_ini(tmp_path, f"""
        [Web Monitor]
        port = 6000
        [DEFAULTS]
        max_proc_num = 3
        [EchoServer]
        import_from = {mod}
        """))
    assert cfg.web_monitor.port == 6000 and cfg.services[0].max_proc_num == 3


def test_no_interpolation_of_percent_signs(tmp_path, mod):
    cfg = load_config(write_ini(tmp_path, f"""
        [EchoServer]
        import_from = {mod}
        tcp_secret = ab%(cd)s%
        """))
    assert cfg.services[0].tcp_secret == "ab%(cd)s%"


def test_a_missing_file_is_a_config_error(tmp_path):
    lines, errors = errors_of(tmp_path / "nope.ini")
    assert lines == [f"{tmp_path / 'nope.ini'}: expected a readable UTF-8 .ini file, "
                     f"found nothing (No such file or directory)"]
    assert errors[0].file == str(tmp_path / "nope.ini")


def test_unparseable_files_are_config_errors(tmp_path):
    lines, _ = errors_of(write_ini(tmp_path, "x = 1\n[A]\n"))
    assert lines == [f"{tmp_path / 'example.ini'}: expected a [section] header before the "
                     f"first key, found 'x = 1' (line 1)"]
    lines, _ = errors_of(write_ini(tmp_path, "[A]\nfoo\nbar\n"))
    assert len(lines) == 2 and "found 'foo' (line 2)" in lines[0]
    lines, _ = errors_of(write_ini(tmp_path, "[A]\nimport_from = a\nimport_from = b\n"))
    assert lines == [f"{tmp_path / 'example.ini'}: [A] import_from: expected each key once per "
                     f"section, found 'import_from' (line 3: a second time)"]
    lines, _ = errors_of(write_ini(tmp_path, "[A]\n[B]\n[A]\n"))
    assert "[A]: expected each section once" in lines[0]


def test_every_problem_is_reported_at_once_with_file_section_key_expected_found(tmp_path, mod,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_ini(tmp_path, f"""
        [web monitor]
        port = 51550000
        colour = blue
        [defaults]
        import_from = x
        [EchoServer]
        import_from = {mod}
        max_proc_num = abc
        max_proc_nun = 3
        host = 1.2.3.4
        tcp_compression = brotli
        wait_until_completed = perhaps
        [Missing]
        import_from = {mod}
        [Unimportable]
        import_from = no_such_module_here
        [NoImport]
        tcp_bind = 127.0.0.1
        [Echo Server]
        import_from = {mod}
        """)
    lines, errors = errors_of("example.ini")
    assert lines == [
        "example.ini: [web monitor] port: expected a port number (1-65535, or 0 for any free "
        "port), found '51550000'",
        "example.ini: [web monitor] colour: expected an option of [web monitor], found 'colour' "
        "(see python -m speedysvc.supervisor.options for every option)",
        "example.ini: [defaults] import_from: expected an option allowed in [defaults], found "
        "'import_from' (set import_from in each service section instead)",
        "example.ini: [EchoServer] max_proc_num: expected a positive integer, found 'abc'",
        "example.ini: [EchoServer] max_proc_nun: expected an option of [EchoServer], found "
        "'max_proc_nun' (did you mean 'max_proc_num'?)",
        "example.ini: [EchoServer] host: expected an option of [EchoServer], found 'host' "
        "(host belongs in [web monitor])",
        "example.ini: [EchoServer] tcp_compression: expected one of none, zlib, lz4, zstd, "
        "found 'brotli'",
        "example.ini: [EchoServer] wait_until_completed: expected a boolean (true/false, yes/no, "
        "on/off, 1/0), found 'perhaps'",
        f"example.ini: [Missing] import_from: expected a module defining class Missing, found "
        f"'{mod}' (module '{mod}' has no class 'Missing')",
        "example.ini: [Unimportable] import_from: expected a module defining class Unimportable, "
        "found 'no_such_module_here' (ModuleNotFoundError: No module named 'no_such_module_here')",
        "example.ini: [NoImport] import_from: expected a Python module path such as "
        "mypackage.services, found nothing",
        "example.ini: [Echo Server]: expected a section named after a ServerMethodsBase class "
        "(a Python identifier), [defaults], [web monitor] or [supervisor], found 'Echo Server'",
    ]
    first = errors[3]
    assert (first.file, first.section, first.key, first.expected, first.found) == (
        "example.ini", "EchoServer", "max_proc_num", "a positive integer", "abc")


def test_a_class_name_typo_gets_a_hint(tmp_path, mod):
    lines, _ = errors_of(write_ini(tmp_path, f"[EchoServr]\nimport_from = {mod}\n"))
    assert lines[0].endswith(f"(module '{mod}' has no class 'EchoServr'; "
                             f"did you mean [EchoServer]?)")


def test_a_module_failing_on_import_is_reported_with_its_error(tmp_path, mod, monkeypatch):
    (tmp_path / "lib" / f"{mod}_broken.py").write_text("raise RuntimeError('db is down')\n")
    lines, _ = errors_of(write_ini(tmp_path, f"[EchoServer]\nimport_from = {mod}_broken\n"))
    assert lines[0].endswith(f"(RuntimeError: db is down at {tmp_path / 'lib' / (mod + '_broken.py')}, "
                             f"line 1)")


def test_the_configparser_default_section_is_not_magic(tmp_path, mod):
    lines, _ = errors_of(write_ini(tmp_path, f"""
        [DEFAULT]
        max_proc_num = 2
        [EchoServer]
        import_from = {mod}
        """))
    assert lines == [f"{tmp_path / 'example.ini'}: [DEFAULT] import_from: expected a Python "
                     f"module path such as mypackage.services, found nothing "
                     f"(did you mean [defaults]?)"]


def test_a_file_without_services_is_an_error(tmp_path):
    lines, _ = errors_of(write_ini(tmp_path, "[web monitor]\nport = 5155\n"))
    assert lines == [f"{tmp_path / 'example.ini'}: expected at least one service section "
                     f"([ClassName] with import_from), found nothing"]


def test_min_above_max_is_reported_where_it_was_written(tmp_path, mod):
    lines, _ = errors_of(write_ini(tmp_path, f"""
        [EchoServer]
        import_from = {mod}
        min_proc_num = 4
        max_proc_num = 2
        """))
    assert lines == [f"{tmp_path / 'example.ini'}: [EchoServer] min_proc_num: expected at most "
                     f"max_proc_num (2), found '4'"]


def test_a_clash_within_defaults_is_reported_once_in_defaults(tmp_path, mod):
    lines, _ = errors_of(write_ini(tmp_path, f"""
        [defaults]
        scale_up_busy = 0.2
        restart_backoff_initial = 2m
        restart_backoff_max = 1m
        [EchoServer]
        import_from = {mod}
        [OtherServer]
        import_from = {mod}
        """))
    assert [line.split(": ", 1)[1] for line in lines] == [
        "[defaults] scale_up_busy: expected more than scale_down_busy (0.25), found '0.2'",
        "[defaults] restart_backoff_initial: expected at most restart_backoff_max (1m), "
        "found '2m'"]


def test_a_service_fixing_a_defaults_clash_is_valid(tmp_path, mod):
    cfg = load_config(write_ini(tmp_path, f"""
        [defaults]
        max_proc_num = 2
        [EchoServer]
        import_from = {mod}
        min_proc_num = 3
        max_proc_num = 3
        """))
    assert cfg.services[0].min_proc_num == 3


def test_compression_needs_its_package(tmp_path, mod, monkeypatch):
    real = config_module.importlib.util.find_spec
    monkeypatch.setattr(config_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "zstandard" else real(name, *a))
    lines, _ = errors_of(write_ini(tmp_path, f"""
        [EchoServer]
        import_from = {mod}
        tcp_compression = zstd
        """))
    assert lines[0].endswith("[EchoServer] tcp_compression: expected a compression whose package "
                             "is installed (pip install zstandard), found 'zstd'")


def test_two_tcp_services_on_one_port_clash(tmp_path, mod):
    lines, _ = errors_of(write_ini(tmp_path, f"""
        [defaults]
        tcp_bind = 127.0.0.1
        [EchoServer]
        import_from = {mod}
        [SamePortServer]
        import_from = {mod}
        """))
    assert lines == [f"{tmp_path / 'example.ini'}: [SamePortServer] port: expected a port not "
                     f"used by [EchoServer], found '5555'"]


def test_one_port_is_fine_without_tcp_and_port_overrides_the_class(tmp_path, mod):
    cfg = load_config(write_ini(tmp_path, f"""
        [EchoServer]
        import_from = {mod}
        [SamePortServer]
        import_from = {mod}
        [OtherServer]
        import_from = {mod}
        tcp_bind = 127.0.0.1
        port = 7000
        """))
    assert [s.port for s in cfg.services] == [5555, 5555, 7000]
    assert cfg.services[2].tcp_address == "tcp://127.0.0.1:7000"


def test_ports_clash_with_the_web_monitor_and_with_tcp_bind(tmp_path, mod):
    lines, _ = errors_of(write_ini(tmp_path, f"""
        [web monitor]
        port = 5555
        [EchoServer]
        import_from = {mod}
        tcp_bind = 127.0.0.1
        [OtherServer]
        import_from = {mod}
        tcp_bind = 127.0.0.1:7001
        port = 7002
        [NoPortServer]
        import_from = {mod}
        tcp_bind = 127.0.0.1
        """))
    assert [line.split(": ", 1)[1] for line in lines] == [
        "[OtherServer] port: expected the port of tcp_bind (7001), found '7002'",
        "[NoPortServer] port: expected a port, as NoPortServer.port is not set, found nothing "
        "(set port or tcp_bind = host:port)",
        "[EchoServer] port: expected a port not used by [web monitor] port, found '5555'"]


def test_two_classes_with_one_service_name_clash(tmp_path, mod):
    lines, _ = errors_of(write_ini(tmp_path, f"""
        [EchoServer]
        import_from = {mod}
        [SameNameServer]
        import_from = {mod}
        """))
    assert lines[0].endswith(f"[SameNameServer] import_from: expected a class whose name is not "
                             f"also that of [EchoServer], found '{mod}' (both are named 'echo')")


def test_classes_must_derive_from_server_methods_base_when_the_core_is_importable(
        tmp_path, mod, monkeypatch):
    class FakeBase:
        pass
    monkeypatch.setattr(config_module, "_server_methods_base", lambda: FakeBase)
    lines, _ = errors_of(write_ini(tmp_path, f"[PlainClass]\nimport_from = {mod}\n"))
    assert lines[0].endswith(f"[PlainClass] import_from: expected a module defining class "
                             f"PlainClass derived from ServerMethodsBase, found '{mod}' "
                             f"({mod}.PlainClass does not derive from it)")
    monkeypatch.setattr(config_module, "_server_methods_base", lambda: None)
    assert load_config(tmp_path / "example.ini").services[0].port == 5700


def test_check_imports_false_imports_nothing(tmp_path):
    cfg = load_config(write_ini(tmp_path, "[Anything]\nimport_from = not_a_real_module\n"),
                      check_imports=False)
    assert cfg.services[0].port is None
    assert "not_a_real_module" not in sys.modules


def test_python_path_makes_services_importable(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "app").mkdir()
    name = f"app_{uuid.uuid4().hex[:8]}"
    (tmp_path / "app" / f"{name}.py").write_text(SERVICES_SOURCE)
    cfg = load_config(write_ini(tmp_path, f"""
        [supervisor]
        python_path = app
        [EchoServer]
        import_from = {name}
        """))
    assert cfg.supervisor.python_path == (str(tmp_path / "app"),)
    assert cfg.services[0].service_class().port == 5555


def test_web_monitor_off_loopback_needs_a_password(tmp_path, mod):
    text = f"[web monitor]\nhost = 0.0.0.0\n{{extra}}\n[EchoServer]\nimport_from = {mod}\n"
    lines, _ = errors_of(write_ini(tmp_path, text.format(extra="")))
    assert lines[0].endswith("[web monitor] host: expected a loopback address unless "
                             "password_hash is set, found '0.0.0.0' (the web monitor can start "
                             "and stop services)")
    cfg = load_config(write_ini(tmp_path, text.format(extra="password_hash = pbkdf2:x$y$z")))
    assert cfg.web_monitor.host == "0.0.0.0"


def test_tcp_off_loopback_without_secret_is_a_warning(tmp_path, mod):
    cfg = load_config(write_ini(tmp_path, f"""
        [EchoServer]
        import_from = {mod}
        tcp_bind = 0.0.0.0
        """))
    [warning] = cfg.warnings
    assert (warning.section, warning.key) == ("EchoServer", "tcp_secret")


def test_supervisor_scope_is_derived_from_the_path_unless_set(tmp_path, mod):
    a = load_config(write_ini(tmp_path, SEED.format(mod=mod), "a.ini"))
    b = load_config(write_ini(tmp_path, SEED.format(mod=mod), "b.ini"))
    assert a.supervisor.scope != b.supervisor.scope
    assert a.supervisor.scope == load_config(tmp_path / "a.ini").supervisor.scope
    c.scope(a.supervisor.scope)
    cfg = load_config(write_ini(tmp_path, f"[supervisor]\nscope = prod1\n[EchoServer]\n"
                                          f"import_from = {mod}\n"))
    assert cfg.supervisor.scope == "prod1"


PRINTABLE = """
[supervisor]
scope = test1
[web monitor]
password_hash = pbkdf2:sha256:1$salt$hash
[defaults]
tcp_bind = 127.0.0.1
tcp_secret = hunter2
max_proc_mem_bytes = 1.5G
scale_interval = 500ms
[EchoServer]
import_from = {mod}
[OtherServer]
import_from = {mod}
max_proc_num = 3
tcp_compression = zlib
"""


def test_print_config_masks_secrets(tmp_path, mod):
    cfg = load_config(write_ini(tmp_path, PRINTABLE.format(mod=mod)))
    text = cfg.to_ini_text()
    assert "hunter2" not in text and "salt" not in text
    assert text.count("tcp_secret = ********") == 2
    assert "password_hash = ********" in text
    assert "hunter2" not in repr(cfg)
    assert "max_proc_mem_bytes = 1536MiB" in text and "scale_interval = 500ms" in text


def test_printed_config_loads_back_to_the_same_config(tmp_path, mod):
    cfg = load_config(write_ini(tmp_path, PRINTABLE.format(mod=mod)))
    again = load_config(write_ini(tmp_path, cfg.to_ini_text(mask_secrets=False), "printed.ini"))
    assert again.services == cfg.services
    assert again.web_monitor == cfg.web_monitor
    assert again.supervisor == cfg.supervisor
    assert not config_diff(cfg, again)


def test_service_config_pickles_for_worker_processes(tmp_path, mod):
    svc = load_config(write_ini(tmp_path, PRINTABLE.format(mod=mod))).services[0]
    assert pickle.loads(pickle.dumps(svc)) == svc


def test_config_diff_names_added_removed_and_changed_services(tmp_path, mod):
    old = load_config(write_ini(tmp_path, PRINTABLE.format(mod=mod)))
    new = load_config(write_ini(tmp_path, f"""
        [supervisor]
        scope = test1
        [web monitor]
        port = 6001
        password_hash = pbkdf2:sha256:1$salt$hash
        [defaults]
        tcp_bind = 127.0.0.1
        tcp_secret = hunter2
        max_proc_mem_bytes = 1.5G
        scale_interval = 500ms
        [OtherServer]
        import_from = {mod}
        max_proc_num = 4
        tcp_compression = zlib
        [NoPortServer]
        import_from = {mod}
        port = 7100
        """))
    diff = config_diff(old, new)
    assert (diff.added, diff.removed, diff.changed) == (["NoPortServer"], ["EchoServer"],
                                                        ["OtherServer"])
    assert diff.changed_options == {"OtherServer": ["max_proc_num"]}
    assert diff.web_monitor_changed and not diff.supervisor_changed
    assert diff


def test_the_typed_settings_classes_have_exactly_the_registry_options():
    import dataclasses

    from speedysvc.supervisor.config import ServiceConfig, SupervisorConfig, WebMonitorConfig
    from speedysvc.supervisor.options import SERVICE, SUPERVISOR, WEB_MONITOR, options_for
    for cls, section, extra in ((ServiceConfig, SERVICE, ["name"]), (WebMonitorConfig, WEB_MONITOR, []),
                                (SupervisorConfig, SUPERVISOR, [])):
        assert [f.name for f in dataclasses.fields(cls)] == extra + list(options_for(section)), \
            f"{cls.__name__} and the [{section}] options of the registry disagree"
