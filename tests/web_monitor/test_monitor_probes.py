"""/health and the Prometheus /metrics exposition."""
from __future__ import annotations

import re

from monitor_fakes import FakeControl

from web_monitor import create_app
from web_monitor.prometheus import CONTENT_TYPE, escape_label_value, render

# One sample line of the text format: name, optional {labels}, value.
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? '
                    r'(-?[0-9.e+-]+|NaN|[+-]Inf)$')


def check_exposition(text: str) -> dict[str, str]:
    """Validate the text format; return {metric name: type}."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in helped, f"TYPE before HELP for {name}"
            assert name not in types, f"{name} declared twice"
            types[name] = kind
        else:
            assert SAMPLE.match(line), f"bad sample line: {line!r}"
            name = re.match(r"[^{ ]+", line).group(0)
            assert name in types, f"sample before TYPE: {line!r}"
    return types


def test_health_is_200_when_all_services_run():
    control = FakeControl({"a": {}, "b": {}})
    response = create_app(control, host="127.0.0.1").test_client().get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "services": {"a": "running", "b": "running"}, "down": []}


def test_health_is_503_naming_services_that_are_down(client):
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["down"] == ["device_api"]


def test_health_is_503_when_supervisor_unreachable(client, fake_control):
    fake_control.unreachable = True
    response = client.get("/health")
    assert response.status_code == 503
    assert "cannot reach the supervisor" in response.get_json()["error"]


def test_metrics_exposition(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE
    text = response.get_data(as_text=True)
    types = check_exposition(text)
    assert types["speedysvc_service_restarts_total"] == "counter"
    assert types["speedysvc_service_rss_bytes"] == "gauge"
    assert 'speedysvc_service_up{service="echo"} 1' in text
    assert 'speedysvc_service_up{service="device_api"} 0' in text
    assert 'speedysvc_service_status{service="device_api",status="failed"} 1' in text
    assert 'speedysvc_service_workers{service="echo"} 2' in text
    assert re.search(r'speedysvc_worker_rss_bytes\{service="echo",worker_id="1"\} \d+', text)
    assert re.search(r'speedysvc_worker_info\{service="echo",worker_id="0",pid="\d+"\} 1', text)
    assert "speedysvc_supervisor_up 1" in text


def test_metrics_escape_awkward_label_values():
    status = {"services": [{"name": 'we"ird\\name\nx', "status": "running", "current": 1}]}
    text = render(status)
    check_exposition(text)
    assert 'speedysvc_service_workers{service="we\\"ird\\\\name\\nx"} 1' in text
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_metrics_when_supervisor_unreachable(client, fake_control):
    fake_control.unreachable = True
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    check_exposition(text)
    assert "speedysvc_supervisor_up 0" in text


def test_metrics_leave_out_missing_readings():
    text = render({"services": [{"name": "a", "status": "starting", "rss": None, "current": 0}]})
    check_exposition(text)
    assert "speedysvc_service_rss_bytes{" not in text
    assert 'speedysvc_service_workers{service="a"} 0' in text
