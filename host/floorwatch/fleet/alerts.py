"""Where the fleet monitor's alerts go: a printed line, a hook command, a webhook.

An alert is the dict fleet.state produces: {"time", "device", "site", "kind", "text", "detail"}.

    dispatcher = Dispatcher(sinks(console=Console(), hook="notify-send-alert", webhook="https://..."))
    dispatcher.send(alert)   # from the MQTT thread: never blocks on a hook or a webhook
    dispatcher.close()       # lets the queued alerts out, then stops the workers

A sink is any callable taking an alert. Sinks with `background = True` (HookSink, WebhookSink) run on
a worker thread of their own behind a bounded queue, so a slow one neither holds up the MQTT thread
nor the other sinks. A sink that fails is reported as a one-line warning when it starts failing and
again when it works again; it never stops the monitor, and the next alert is tried as usual.
subprocess and urllib.request do the work: the standard library covers it, so no extra dependency.
"""

import json
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from rich.text import Text

_KIND_STYLE = {"offline": "red", "alarm": "red", "health": "yellow", "changed": "yellow",
               "online": "green", "alarm_clear": "green"}


class AlertError(ValueError):
    """A sink that cannot work as configured (bad command, bad URL)."""


class SinkFailed(Exception):
    """One delivery failed; the message is one line."""


def alert_line(alert):
    """One line for an alert: local time, site/device, kind, text."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(alert.get("time", time.time())))
    return "%s %s/%s %s: %s" % (when, alert.get("site"), alert.get("device"), alert.get("kind"), alert.get("text"))


def alert_json(alert):
    return json.dumps(alert, default=str)  # `detail` may hold anything the state kept


class PrintSink:
    """Prints each alert as one line to a rich Console (coloured by kind) or to a text stream."""

    background = False

    def __init__(self, console=None, stream=None):
        if (console is None) == (stream is None):
            raise AlertError("PrintSink needs a console or a stream, not both")
        self.console, self.stream = console, stream

    def __call__(self, alert):
        line = alert_line(alert)
        if self.console is not None:
            # Text, not markup: device ids and alert texts come off the network.
            self.console.print(Text(line, style=_KIND_STYLE.get(alert.get("kind"), "")), soft_wrap=True)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()


class HookSink:
    """`--on-alert CMD`: runs CMD (shlex-split, no shell) with the alert as JSON on its stdin."""

    background = True

    def __init__(self, command, timeout=10.0):
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise AlertError("--on-alert %r: %s" % (command, exc)) from None
        if not self.argv:
            raise AlertError("--on-alert: the command is empty")
        if shutil.which(self.argv[0]) is None:
            raise AlertError("--on-alert: %s: no such command (or not executable)" % self.argv[0])
        self.name = "alert hook %s" % _clip(command)
        self.timeout = timeout

    def __call__(self, alert):
        try:
            done = subprocess.run(self.argv, input=alert_json(alert) + "\n", text=True, capture_output=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise SinkFailed("timed out after %g s" % self.timeout) from None
        except OSError as exc:
            raise SinkFailed(str(exc)) from None
        if done.returncode != 0:
            err = done.stderr.strip().splitlines()
            raise SinkFailed("exit status %d%s" % (done.returncode, ": " + _clip(err[-1]) if err else ""))


class WebhookSink:
    """`--webhook URL`: POSTs the alert as JSON (http or https)."""

    background = True

    def __init__(self, url, timeout=5.0):
        parts = urllib.parse.urlsplit(url)
        try:
            parts.port  # raises on a port that is not a number
        except ValueError as exc:
            raise AlertError("--webhook %s: %s" % (url, exc)) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AlertError("--webhook %s: expected an http:// or https:// URL with a host" % url)
        self.url, self.timeout = url, timeout
        # Only scheme and host in warnings: webhook paths and queries often carry the secret.
        self.name = "webhook %s://%s" % (parts.scheme, parts.netloc.rpartition("@")[2])

    def __call__(self, alert):
        request = urllib.request.Request(self.url, data=alert_json(alert).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise SinkFailed("HTTP %d %s" % (exc.code, exc.reason)) from None
        except urllib.error.URLError as exc:
            raise SinkFailed(str(exc.reason)) from None
        except (OSError, ValueError) as exc:  # timeouts, resets, malformed responses
            raise SinkFailed(str(exc) or type(exc).__name__) from None


def sinks(console=None, stream=None, hook=None, webhook=None, hook_timeout=10.0, webhook_timeout=5.0):
    """The sinks the CLI options ask for; raises AlertError (one line) for a bad command or URL."""
    out = []
    if console is not None or stream is not None:
        out.append(PrintSink(console=console, stream=stream))
    if hook is not None:
        out.append(HookSink(hook, timeout=hook_timeout))
    if webhook is not None:
        out.append(WebhookSink(webhook, timeout=webhook_timeout))
    return out


class Dispatcher:
    """Hands each alert to every sink; background sinks each get a worker thread and a bounded queue.

    `warn(line)` receives the one-line warnings; by default they go to sys.stderr (looked up at each
    call, so a rich Live display that redirects stderr shows them above itself).
    """

    def __init__(self, sinks, warn=None, queue_size=100):
        self.warn = warn or (lambda line: print("warning: " + line, file=sys.stderr))
        self._inline = []
        self._workers = []
        for sink in sinks:
            if getattr(sink, "background", False):
                self._workers.append(_Worker(sink, self._guard(sink), queue_size, self.warn))
            else:
                self._inline.append(self._guard(sink))

    def send(self, alert):
        for deliver in self._inline:
            deliver(alert)
        for worker in self._workers:
            worker.put(alert)

    def close(self):
        """Deliver what is queued (each delivery is bounded by its sink's timeout), then stop."""
        for worker in self._workers:
            worker.close()

    def _guard(self, sink):
        """`sink` wrapped so a failure becomes a warning: once when it starts, once when it ends."""
        name = getattr(sink, "name", None) or type(sink).__name__
        failed = [0]  # alerts lost since the sink last worked

        def deliver(alert):
            try:
                sink(alert)
            except Exception as exc:  # noqa: BLE001 - no sink may take the monitor down
                if not failed[0]:
                    reason = str(exc) if isinstance(exc, SinkFailed) else "%s: %s" % (type(exc).__name__, exc)
                    self.warn("%s failed: %s (further failures are not reported until it works again)"
                              % (name, _clip(reason)))
                failed[0] += 1
            else:
                if failed[0]:
                    self.warn("%s works again (%s not delivered)" % (name, _count(failed[0], "alert")))
                    failed[0] = 0
        return deliver


class _Worker:
    _STOP = object()

    def __init__(self, sink, deliver, queue_size, warn):
        self.name = getattr(sink, "name", None) or type(sink).__name__
        self.deliver, self.warn = deliver, warn
        self.queue = queue.Queue(queue_size)
        self.dropped = 0  # alerts refused since the worker last took one
        self._lock = threading.Lock()  # `dropped` is counted on the MQTT thread, reported on the worker
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="fleet-alerts-%s" % type(sink).__name__, daemon=True)
        self.thread.start()

    def put(self, alert):
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            # The MQTT thread must not wait for a stuck sink: drop, and say so once per backlog.
            with self._lock:
                first = not self.dropped
                self.dropped += 1
            if first:
                self.warn("%s is falling behind: %d alerts queued, dropping new ones" % (self.name, self.queue.maxsize))

    def close(self):
        if not self.closed:
            self.closed = True
            self.queue.put(self._STOP)  # waits while full: closing delivers everything queued
        self.thread.join()

    def _run(self):
        while True:
            alert = self.queue.get()
            if alert is self._STOP:
                return
            with self._lock:
                dropped, self.dropped = self.dropped, 0
            if dropped:
                self.warn("%s dropped %s" % (self.name, _count(dropped, "alert")))
            self.deliver(alert)


def _count(n, noun):
    return "%d %s%s" % (n, noun, "" if n == 1 else "s")


def _clip(text, width=80):
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"
