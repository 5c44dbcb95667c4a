"""`floorwatch sim`: run simulated boards against a broker and show them in a live table.

Times shown and `duration` are simulated (board) seconds: with `speed` above 1 the boards' sleeps
pass faster than the wall clock (see board.ScaledClock), so an hour of a scenario can be watched in
a minute or so.

The broker: by default a private mosquitto secured as a real site's (security.brokerdir): TLS with
a CA made for the run, a login of its own for every board (registered before the boards exist:
their passwords are made here) and the ACL, so the firmware's TLS and login paths are what the
sim exercises; the table's observer logs in as the monitor role. `plain` starts the old anonymous,
unencrypted one instead (cheaper for big fleets). An external broker comes as a BrokerAccess; the
boards use its host, port and TLS, and the CA file it names.
"""

import contextlib
import signal
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ..broker import BrokerError, Mosquitto
from ..observer import Observer
from ..security.access import AccessError, BrokerAccess
from .fleet import Fleet, device_id, new_password

_STATE_STYLE = {"online": "green", "offline": "red"}
_HEALTH_STYLE = {"ok": "green", "degraded": "yellow", "fault": "red"}
_ZONE_STYLE = {"A": "green", "B": "green", "C": "yellow", "D": "red"}


def clock_text(seconds):
    """H:MM:SS for a duration in seconds."""
    seconds = int(seconds)
    return "%d:%02d:%02d" % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def _largest(values):
    values = [v for v in values or () if v is not None]
    return max(values) if values else None


def _vibration(view):
    """(rms g, velocity mm/s with its zone, kurtosis) cells: the largest axis of each accelerometer."""
    rms, vel, kurt = [], [], []
    for name in sorted(view.vib):
        feats = view.vib[name]
        zone = feats.get("zone")
        for cells, key, text in ((rms, "rms", "%.3f"), (vel, "vel", "%.2f"), (kurt, "kurt", "%.1f")):
            value = _largest(feats.get(key))
            if value is not None:
                cells.append(text % value)
                if key == "vel" and zone:
                    cells[-1] += " [%s]%s[/]" % (_ZONE_STYLE.get(zone, "dim"), zone)
    return " ".join(rms) or "-", " ".join(vel) or "-", " ".join(kurt) or "-"


def table(observer, fleet, sim_s, duration, scenario="normal", speed=1.0, wall_s=None):
    views = {view.device_id: view for view in observer.snapshot()}
    temp_names = sorted({name for view in views.values() for name in view.temps})
    title = "floorwatch sim — %d boards — %s — %s simulated" % (len(fleet.boards), scenario, clock_text(sim_s))
    title += " of %s" % clock_text(duration) if duration else " (Ctrl-C to stop)"
    if speed != 1 and wall_s:
        # A saturated host runs the boards slower than asked: show what it achieves.
        title += " — speed %g (x%.0f achieved in %.0f s)" % (speed, sim_s / wall_s, wall_s)
    grid = Table(title=title, caption="temperatures in °C; vibration, largest axis: RMS in g, velocity in "
                                      "mm/s with its ISO 10816-3 zone, kurtosis")
    grid.add_column("device", no_wrap=True)
    grid.add_column("state", no_wrap=True)
    for name in temp_names:
        grid.add_column(name, justify="right", no_wrap=True)
    grid.add_column("rms", justify="right", no_wrap=True)
    grid.add_column("vel", justify="right", no_wrap=True)
    grid.add_column("kurt", justify="right", no_wrap=True)
    grid.add_column("alarms", min_width=6)
    grid.add_column("health", no_wrap=True)
    grid.add_column("records", justify="right", no_wrap=True)
    for board in fleet.boards:
        view = views.get(board.device_id)
        if view is None:
            grid.add_row(board.device_id, "[dim]booting[/]", *[""] * (len(temp_names) + 6))
            continue
        temps = ["%.1f" % view.temps[name] if name in view.temps else "-" for name in temp_names]
        alarms = ", ".join("%s:%s" % item for item in sorted(view.alarms.items())) or "-"
        grid.add_row(
            board.device_id,
            "[%s]%s[/]" % (_STATE_STYLE.get(view.state, "dim"), view.state),
            *temps, *_vibration(view), alarms,
            "[%s]%s[/]" % (_HEALTH_STYLE.get(view.health, "dim"), view.health or "?"),
            str(len(view.records)),
        )
    if observer.violations:
        grid.caption = "[red]%d messages broke the contract; last: %s[/]" % (
            len(observer.violations), observer.violations[-1][1])
    return grid


@contextlib.contextmanager
def private_broker(site, passwords, plain=False, console=None):
    """A mosquitto for this run: yields the observer's BrokerAccess. Secured unless `plain`: every
    (device id, password) of `passwords` registered under `site`, TLS on localhost."""
    if plain:
        with Mosquitto() as broker:
            if console:
                console.print("started a private mosquitto on %s:%d (plain, anonymous)" % (broker.host, broker.port))
            yield BrokerAccess(broker.host, broker.port)
        return
    from ..security.brokerdir import BrokerDir  # late: cryptography is only needed here

    with tempfile.TemporaryDirectory(prefix="floorwatch-sim-broker-") as tmp:
        secured = BrokerDir.init(Path(tmp) / "broker", devices=[(site, i, p) for i, p in passwords.items()])
        with Mosquitto(secure=secured) as broker:
            if console:
                console.print("started a private mosquitto on localhost:%d (TLS, a login per board)" % broker.tls_port)
            yield BrokerAccess("localhost", broker.tls_port, tls=True, ca=secured.ca_path, user="monitor",
                               password=secured.role_password("monitor"))


def run(boards, broker, duration, seed, site, console=None, scenario="normal", speed=1.0, onset_s=None, plain=False,
        make_fleet=Fleet):
    """Run the simulation for `duration` simulated seconds (0: until Ctrl-C).

    `broker`: a BrokerAccess of an external broker, or None for a private one (secured unless
    `plain`). `make_fleet`: called as Fleet is (sim/shard.py passes its ShardedFleet); a fleet with
    `failures` shows them under the table, and one whose `ended` turns true stops the run. Returns
    the observer's final views (for the summary and tests).
    """
    console = console or Console()
    passwords = {device_id(index): new_password() for index in range(boards)}
    with contextlib.ExitStack() as cleanup:
        if broker is None:
            broker = cleanup.enter_context(private_broker(site, passwords, plain, console))
        ca = Path(broker.ca).read_text() if broker.tls and broker.ca else None
        try:
            observer = Observer(broker, site=site).start()
        except AccessError:
            raise
        except OSError as exc:
            raise BrokerError("cannot reach the broker at %s:%d (%s)" % (broker.host, broker.port, exc)) from None
        cleanup.callback(observer.stop)
        extra = {} if onset_s is None else {"onset_s": onset_s}
        fleet = cleanup.enter_context(make_fleet(boards, broker.host, broker.port, site=site, seed=seed,
                                                 mode=scenario, speed=speed, passwords=passwords, ca=ca, **extra))
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *a: stop.set())
        cleanup.callback(signal.signal, signal.SIGINT, previous)
        started = time.monotonic()

        def view():
            grid = table(observer, fleet, fleet.board_time(), duration, scenario, speed, time.monotonic() - started)
            failures = getattr(fleet, "failures", None)
            if failures:
                grid.caption = "[red]%s[/]" % "; ".join(failures)
            return grid

        with Live(view(), console=console, refresh_per_second=2) as live:
            while not stop.is_set():
                if (duration and fleet.board_time() >= duration) or getattr(fleet, "ended", False):
                    break
                live.update(view())
                stop.wait(0.5 if speed == 1 else 0.1)
            fleet.stop()  # power cut: the broker publishes each board's Last Will
            ids = [b.device_id for b in fleet.boards]
            observer.wait_for(lambda o: all(o.devices.get(i) and o.devices[i].state == "offline" for i in ids), 10)
            live.update(view())
        console.print()
        return observer.snapshot()
