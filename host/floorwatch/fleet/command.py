"""`floorwatch fleet`: watch, status, export and cmd, each a thin layer over this package."""

import json
import signal
import threading

import click
from rich.console import Console

from ..security.access import broker_access_options
from . import alerts, dashboard
from .cmd import command as cmd_command
from .export import command as export_command
from .monitor import Monitor, snapshot


broker_option = broker_access_options(help="The fleet's broker: mqtt[s]://[USER@]HOST[:PORT] (log in as a user "
                                           "that may read floorwatch/#, e.g. the monitor role).")


@click.group("fleet")
def group():
    """Watch the fleet, take snapshots, export its data, send commands."""


@group.command("watch")
@broker_option
@click.option("--db", default="fleet.db", show_default=True, type=click.Path(dir_okay=False),
              help="SQLite file to store telemetry and events in ('' : store nothing).")
@click.option("--share", metavar="GROUP", help="Split the fleet with other monitors of GROUP (MQTT shared subscription).")
@click.option("--heartbeat", default=90.0, show_default=True, type=click.FloatRange(5, 86400),
              help="Seconds of silence after which a device counts offline.")
@click.option("--on-alert", "hook", metavar="CMD", help="Run CMD for every alert, the alert as JSON on stdin.")
@click.option("--webhook", metavar="URL", help="POST every alert as JSON to URL.")
@click.option("--sort", default="device", show_default=True, help="Dashboard column to sort by.")
@click.option("--filter", "filter_expr", help="Dashboard filter, e.g. state=offline, site=plant-a, health!=ok, alarming.")
@click.option("--no-dashboard", is_flag=True, help="Print alerts only (for logs and services).")
def watch(broker, db, share, heartbeat, hook, webhook, sort, filter_expr, no_dashboard):
    """Keep the fleet's state live: dashboard, alerts, and (with --db) a store."""
    console = Console()
    dashboard.render([], {"total": 0, "online": 0, "offline": 0, "alarming": 0}, sort, filter_expr)  # bad --sort/--filter: fail now
    dispatcher = alerts.Dispatcher(alerts.sinks(console=console, hook=hook, webhook=webhook))  # above the live table
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Monitor(broker, db=db or None, share=share, heartbeat_s=heartbeat, on_alert=dispatcher.send) as monitor:
        try:
            if no_dashboard:
                stop.wait()
            else:
                dashboard.run_dashboard(lambda: (monitor.state.devices(), monitor.state.summary()),
                                        sort, filter_expr, stop_event=stop, console=console)
        except KeyboardInterrupt:
            pass
    dispatcher.close()


@group.command("status")
@broker_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per device.")
@click.option("--sort", default="device", show_default=True)
@click.option("--filter", "filter_expr")
def status(broker, as_json, sort, filter_expr):
    """A snapshot of the fleet from its retained messages; no database needed."""
    state = snapshot(broker)
    devices = state.devices()
    if as_json:
        click.echo(json.dumps([d.as_dict() for d in devices], sort_keys=True))
        return
    Console().print(dashboard.render(devices, state.summary(), sort, filter_expr))


group.add_command(export_command)
group.add_command(cmd_command)
command = group
