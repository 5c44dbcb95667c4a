"""Alert sinks: a real local HTTP server takes the webhook POSTs, real commands are the hooks."""

import io
import json
import shlex
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.console import Console

from floorwatch.fleet import alerts


def make_alert(n=0, kind="offline"):
    return {"time": 1714557600.0 + n, "device": "node-%02d" % n, "site": "plant-a", "kind": kind,
            "text": "alert number %d" % n, "detail": {"n": n}}


@pytest.fixture
def webhook_server():
    """A local HTTP server; `server.received` collects (content type, parsed body); `server.fail_first`
    makes it answer the first N posts with HTTP 500."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if server.fail_first > 0:
                server.fail_first -= 1
                self.send_response(500)
            else:
                server.received.append((self.headers["Content-Type"], json.loads(body)))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.received, server.fail_first = [], 0
    server.url = "http://127.0.0.1:%d/hooks/secret-token" % server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def hook_command(script, *args):
    """A real hook: this Python running `script` (stdin is the alert)."""
    return shlex.join([sys.executable, "-c", script, *map(str, args)])


# Appends the alert it reads to argv[1]; exits 3 for "offline" alerts, sleeps for "health" ones.
PICKY_HOOK = """
import json, sys, time
alert = json.loads(sys.stdin.read())
if alert["kind"] == "offline":
    print("cannot page anyone", file=sys.stderr); sys.exit(3)
if alert["kind"] == "health":
    time.sleep(30)
with open(sys.argv[1], "a") as out:
    out.write(json.dumps(alert) + "\\n")
"""


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_alert_line_has_local_time_place_kind_and_text():
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1714557603))
    assert alerts.alert_line(make_alert(3)) == local + " plant-a/node-03 offline: alert number 3"


def test_print_sink_to_a_stream_and_to_a_console():
    stream, screen = io.StringIO(), io.StringIO()
    dispatcher = alerts.Dispatcher([alerts.PrintSink(stream=stream),
                                    alerts.PrintSink(console=Console(file=screen, width=200))])
    dispatcher.send(make_alert(1))
    dispatcher.send(make_alert(2, kind="online"))
    dispatcher.close()
    for text in (stream.getvalue(), screen.getvalue()):
        lines = text.splitlines()
        assert len(lines) == 2
        assert "plant-a/node-01 offline: alert number 1" in lines[0]
        assert "plant-a/node-02 online: alert number 2" in lines[1]


def test_print_sink_does_not_interpret_markup_from_the_network():
    screen = io.StringIO()
    alerts.PrintSink(console=Console(file=screen, width=200))(dict(make_alert(), text="[bold]x[/bold] [/]"))
    assert "[bold]x[/bold] [/]" in screen.getvalue()


def test_webhook_posts_each_alert_as_json(webhook_server):
    dispatcher = alerts.Dispatcher(alerts.sinks(webhook=webhook_server.url))
    sent = [make_alert(n) for n in range(3)]
    for alert in sent:
        dispatcher.send(alert)
    dispatcher.close()
    assert webhook_server.received == [("application/json", alert) for alert in sent]


def test_a_failing_webhook_is_reported_once_and_later_alerts_still_go(webhook_server):
    webhook_server.fail_first = 2
    warnings = []
    dispatcher = alerts.Dispatcher(alerts.sinks(webhook=webhook_server.url), warn=warnings.append)
    for n in range(4):
        dispatcher.send(make_alert(n))
    dispatcher.close()
    assert [body["device"] for _, body in webhook_server.received] == ["node-02", "node-03"]
    assert len(warnings) == 2
    assert "HTTP 500" in warnings[0] and "failed" in warnings[0]
    assert "works again (2 alerts not delivered)" in warnings[1]
    assert all("secret-token" not in line and "\n" not in line for line in warnings)


def test_hook_gets_the_alert_as_json_on_stdin(tmp_path):
    out = tmp_path / "alerts.jsonl"
    dispatcher = alerts.Dispatcher(alerts.sinks(hook=hook_command(PICKY_HOOK, out)))
    sent = [make_alert(n, kind="alarm") for n in range(3)]
    for alert in sent:
        dispatcher.send(alert)
    dispatcher.close()
    assert read_lines(out) == sent


def test_failing_and_slow_hooks_and_a_dead_webhook_do_not_stop_later_alerts(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        dead_url = "http://127.0.0.1:%d/" % probe.getsockname()[1]
    out = tmp_path / "alerts.jsonl"
    warnings = []
    dispatcher = alerts.Dispatcher([alerts.HookSink(hook_command(PICKY_HOOK, out), timeout=0.5),
                                    alerts.WebhookSink(dead_url, timeout=1)], warn=warnings.append)
    kinds = ["offline", "online", "health", "alarm", "offline", "alarm_clear"]
    for n, kind in enumerate(kinds):
        dispatcher.send(make_alert(n, kind=kind))
    dispatcher.close()
    assert [a["kind"] for a in read_lines(out)] == ["online", "alarm", "alarm_clear"]
    hook_warnings = [w for w in warnings if w.startswith("alert hook")]
    assert "failed: exit status 3: cannot page anyone" in hook_warnings[0]
    assert "works again (1 alert not delivered)" in hook_warnings[1]
    assert "failed: timed out after 0.5 s" in hook_warnings[2]
    assert len(hook_warnings) == 6  # each outage: one warning as it starts, one as it ends
    webhook_warnings = [w for w in warnings if w.startswith("webhook")]
    assert len(webhook_warnings) == 1 and "refused" in webhook_warnings[0].lower()


def test_a_stuck_sink_drops_alerts_beyond_its_queue_and_says_so():
    entered, release, got, warnings = threading.Event(), threading.Event(), [], []

    class Stuck:
        background = True
        name = "stuck sink"

        def __call__(self, alert):
            entered.set()
            release.wait(10)
            got.append(alert["device"])

    dispatcher = alerts.Dispatcher([Stuck()], warn=warnings.append, queue_size=1)
    dispatcher.send(make_alert(0))
    assert entered.wait(5)
    for n in (1, 2, 3):  # 1 waits in the queue; 2 and 3 find it full
        dispatcher.send(make_alert(n))
    release.set()
    dispatcher.close()
    assert got == ["node-00", "node-01"]
    assert warnings == ["stuck sink is falling behind: 1 alerts queued, dropping new ones",
                        "stuck sink dropped 2 alerts"]


@pytest.mark.parametrize("url, why", [
    ("ftp://example.com/x", "http:// or https://"),
    ("example.com/hook", "http:// or https://"),
    ("http:///path", "with a host"),
    ("http://host:port/", "port"),
])
def test_bad_webhook_url_is_a_one_line_error(url, why):
    with pytest.raises(alerts.AlertError) as error:
        alerts.sinks(webhook=url)
    assert why in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("command, why", [
    ("", "empty"),
    ('notify "unbalanced', "quotation"),
    ("floorwatch-no-such-hook --x", "no such command"),
])
def test_bad_hook_is_a_one_line_error(command, why):
    with pytest.raises(alerts.AlertError) as error:
        alerts.sinks(hook=command)
    assert why in str(error.value) and "\n" not in str(error.value)
