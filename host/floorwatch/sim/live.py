"""`floorwatch sim`: run simulated boards against a broker and show them in a live table."""

import contextlib
import signal
import threading
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ..broker import BrokerError, Mosquitto, parse_broker_url
from ..observer import Observer
from .fleet import Fleet

_STATE_STYLE = {"online": "green", "offline": "red"}
_HEALTH_STYLE = {"ok": "green", "degraded": "yellow", "fault": "red"}


def table(observer, fleet, elapsed, duration):
    views = {view.device_id: view for view in observer.snapshot()}
    temp_names = sorted({name for view in views.values() for name in view.temps})
    limit = "%.0f s" % duration if duration else "Ctrl-C to stop"
    grid = Table(title="floorwatch sim — %d boards — %.0f s (%s)" % (len(fleet.boards), elapsed, limit),
                 caption="temperatures in °C; vibration: largest axis RMS in g")
    grid.add_column("device", no_wrap=True)
    grid.add_column("state", no_wrap=True)
    for name in temp_names:
        grid.add_column(name, justify="right", no_wrap=True)
    grid.add_column("vib", justify="right", no_wrap=True)
    grid.add_column("alarms", min_width=6)
    grid.add_column("health", no_wrap=True)
    grid.add_column("records", justify="right", no_wrap=True)
    for board in fleet.boards:
        view = views.get(board.device_id)
        if view is None:
            grid.add_row(board.device_id, "[dim]booting[/]", *[""] * (len(temp_names) + 4))
            continue
        temps = ["%.1f" % view.temps[name] if name in view.temps else "-" for name in temp_names]
        vib = " ".join("%.3f" % v for _, v in sorted(view.vib_rms.items())) or "-"
        alarms = ", ".join("%s:%s" % item for item in sorted(view.alarms.items())) or "-"
        grid.add_row(
            board.device_id,
            "[%s]%s[/]" % (_STATE_STYLE.get(view.state, "dim"), view.state),
            *temps, vib, alarms,
            "[%s]%s[/]" % (_HEALTH_STYLE.get(view.health, "dim"), view.health or "?"),
            str(len(view.records)),
        )
    if observer.violations:
        grid.caption = "[red]%d messages broke the contract; last: %s[/]" % (
            len(observer.violations), observer.violations[-1][1])
    return grid


def run(boards, broker_url, duration, seed, site, console=None):
    """Run the simulation; returns the observer's final views (for the summary and tests)."""
    console = console or Console()
    with contextlib.ExitStack() as cleanup:
        if broker_url is None:
            broker = cleanup.enter_context(Mosquitto())
            host, port = broker.host, broker.port
            console.print("started a private mosquitto on %s:%d" % (host, port))
        else:
            host, port = parse_broker_url(broker_url)
        try:
            observer = Observer(host, port, site=site).start()
        except (OSError, TimeoutError) as exc:
            raise BrokerError("cannot reach the broker at %s:%d (%s)" % (host, port, exc)) from None
        cleanup.callback(observer.stop)
        fleet = cleanup.enter_context(Fleet(boards, host, port, site=site, seed=seed))
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *a: stop.set())
        cleanup.callback(signal.signal, signal.SIGINT, previous)
        started = time.monotonic()
        with Live(table(observer, fleet, 0, duration), console=console, refresh_per_second=2) as live:
            while not stop.is_set():
                elapsed = time.monotonic() - started
                if duration and elapsed >= duration:
                    break
                live.update(table(observer, fleet, elapsed, duration))
                stop.wait(0.5)
            fleet.stop()  # power cut: the broker publishes each board's Last Will
            ids = [b.device_id for b in fleet.boards]
            observer.wait_for(lambda o: all(o.devices.get(i) and o.devices[i].state == "offline" for i in ids), 10)
            live.update(table(observer, fleet, time.monotonic() - started, duration))
        console.print()
        return observer.snapshot()
