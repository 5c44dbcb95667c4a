"""The `floorwatch` command: a thin layer over the host package's subpackages.

User mistakes (bad options, unreadable files, a missing broker) end in one line on stderr and exit
status 2 (usage) or 1 (failure), never a traceback.
"""

import os
import re
import sys

import click

from . import __version__
from .broker import BrokerError
from .security.access import broker_access_options
from .sim.chaos import CLASSES as FAULT_CLASSES
from .sim.physics import MODES

SITE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _site(ctx, param, value):
    if not SITE_PATTERN.match(value):
        raise click.BadParameter("%r must be 1-32 of a-z, 0-9, '_' and '-', starting with a letter or digit" % value)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="floorwatch")
def cli():
    """floorwatch: ESP32 sensor-node firmware tools."""


class Speed(click.ParamType):
    """--speed: a number from 1 to 1000, or "max" (the virtual clock)."""

    name = "speed"

    def convert(self, value, param, ctx):
        if value == "max":
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail("%r is not a number from 1 to 1000, nor max" % value, param, ctx)
        if not 1 <= number <= 1000:  # nan too
            self.fail("%s is not in the range 1<=x<=1000 (or max)" % value, param, ctx)
        return number


class Processes(click.ParamType):
    """--processes: a whole number from 1, or "auto" (one per CPU)."""

    name = "processes"

    def convert(self, value, param, ctx):
        if value == "auto":
            return os.cpu_count() or 1
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail("%r is not a whole number from 1, nor auto" % value, param, ctx)
        if number < 1:
            self.fail("%s is not in the range x>=1 (or auto)" % value, param, ctx)
        return number


def _faults(ctx, param, value):
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in FAULT_CLASSES]
    if unknown or not names:
        raise click.BadParameter("%s: expected a comma-separated list of %s" % (
            ", ".join(map(repr, unknown)) or "empty", ", ".join(FAULT_CLASSES)))
    return names


@cli.command()
@click.option("--boards", default=3, show_default=True, type=click.IntRange(1, 10000), help="How many boards to simulate.")
@broker_access_options(required=False, help="Broker to publish to, mqtt[s]://[USER@]HOST[:PORT]; without it a private "
                      "mosquitto is started on free loopback ports (TLS and a login per board, unless --plain). "
                      "The boards connect to the same host and port (with mqtts://, checking it against --ca).")
@click.option("--plain", is_flag=True, help="Make the private mosquitto plain and anonymous (no TLS, no logins): "
                                            "lighter for big fleets.")
@click.option("--duration", default=0.0, type=click.FloatRange(0, None), metavar="SECONDS",
              help="Stop after this much simulated time (0: run until Ctrl-C; chaos needs one).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, None), help="Seed for reproducible signals and faults.")
@click.option("--site", default="sim", show_default=True, callback=_site, help="Site name in the topics.")
@click.option("--scenario", default="normal", show_default=True, type=click.Choice(MODES + ("chaos",)),
              help="What every board's machine does: stay healthy, or develop that fault after --onset; "
                   "chaos: healthy machines, faulty boards, network and broker, and a loss report.")
@click.option("--onset", default=600.0, show_default=True, type=click.FloatRange(0, None), metavar="SECONDS",
              help="Simulated seconds from power-on until the scenario's fault starts.")
@click.option("--speed", default="1", show_default=True, type=Speed(), metavar="X|max",
              help="Run the boards' idle time X times faster than real time (1-1000), or as fast as the "
                   "host computes (max: a virtual clock; chaos only).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE.json",
              help="chaos: write the loss report (JSON) here.")
@click.option("--faults", callback=_faults, metavar="CLASS,...",
              help="chaos: the fault classes to play, of %s (default: all). Giving broker_restart with "
                   "--broker is an error; by default it is left out when the broker is not ours." % ", ".join(FAULT_CLASSES))
@click.option("--intensity", default=1.0, show_default=True, type=click.FloatRange(0, 1000, min_open=True),
              metavar="X", help="chaos: X times the default fault rates (a few faults per board per day).")
@click.option("--processes", default="1", show_default=True, type=Processes(), metavar="P|auto",
              help="Run the boards in P worker processes (auto: one per CPU), so that they use more than one "
                   "core; not with --scenario chaos. At most one per board.")
def sim(boards, broker, plain, duration, seed, site, scenario, onset, speed, report_path, faults, intensity,
        processes):
    """Run simulated boards (the real firmware on CPython) with a live table, or a chaos campaign."""
    if broker is not None and plain:
        raise click.UsageError("--plain is for the private broker: leave out --broker")
    processes = min(processes, boards)
    if processes > 1 and scenario == "chaos":
        raise click.UsageError("--processes above 1 is for the live table: a chaos campaign drives its boards' "
                               "faults and clock from one process")
    if scenario == "chaos":
        if broker is not None and (broker.tls or broker.user):
            raise click.UsageError("--scenario chaos runs against a plain, anonymous broker: mqtt://HOST[:PORT] "
                                   "without --ca, --user or --password-file")
        broker_url = broker and broker.url
        return _chaos(boards, broker_url, duration, seed, site, speed, report_path, faults, intensity)
    if broker is not None and broker.tls and broker.ca is None:
        raise click.UsageError("--broker mqtts://...: give --ca FILE, the CA the boards check the broker's certificate with")
    for name, given in (("--report", report_path), ("--faults", faults)):
        if given is not None:
            raise click.UsageError("%s is for --scenario chaos" % name)
    if speed == "max":
        raise click.UsageError("--speed max is for --scenario chaos (the live table runs on scaled time)")
    failures = []
    if processes > 1:
        from .sim import shard

        views, failures = shard.run(boards, broker, duration, seed, site, processes, scenario=scenario, speed=speed,
                                    onset_s=onset, plain=plain)
    else:
        from .sim import live

        views = live.run(boards, broker, duration, seed, site, scenario=scenario, speed=speed, onset_s=onset,
                         plain=plain)
    online = sum(1 for v in views if v.records)
    click.echo("%d of %d boards published telemetry; %d records in all" % (online, boards, sum(len(v.records) for v in views)))
    if failures:
        raise click.ClickException("; ".join(failures))


def _chaos(boards, broker_url, duration, seed, site, speed, report_path, faults, intensity):
    from rich.console import Console
    from rich.live import Live

    from .sim import chaos

    if not duration:
        raise click.UsageError("--duration: chaos needs a duration above 0 (simulated seconds)")
    if broker_url and faults and "broker_restart" in faults:
        raise click.UsageError("--faults broker_restart needs the private broker: leave out --broker")
    if report_path and not os.access(os.path.dirname(os.path.abspath(report_path)), os.W_OK):
        raise click.UsageError("--report: cannot write %s (no such directory, or not writable)" % report_path)
    console = Console()
    with Live(chaos.progress_text(None), console=console, refresh_per_second=2, transient=True) as live:
        report = chaos.run(boards, duration, seed=seed, site=site, speed=speed, broker_url=broker_url,
                           classes=faults or chaos.CLASSES, report_path=report_path, intensity=intensity,
                           progress=lambda campaign: live.update(chaos.progress_text(campaign)))
    for renderable in chaos.summary(report, report_path):
        console.print(renderable)
    if not report["goal_met"]:
        raise click.ClickException("goal not met: %d records silently lost" % report["totals"]["silently_lost"])


@cli.command("boards")
def boards_command():
    """The board definitions (boards/*.json): chip, flash, image offset, mpy arch, pins."""
    from rich.console import Console
    from rich.table import Table

    from . import boards
    table = Table("board", "chip", "flash", "image at", "mpy arch", "I2C SDA/SCL", "1-Wire", "LED", "name")
    for name in boards.names():
        b = boards.load(name)
        pins = b["pins"]
        table.add_row(name, b["chip"], b["flash_size"], "%#x" % b["image_offset"], b["mpy_arch"],
                      "%d/%d" % (pins["i2c_sda"], pins["i2c_scl"]), str(pins["onewire"]),
                      "-" if pins["led"] is None else "%d (%s)" % (pins["led"], b["led_type"]), b["name"])
    Console().print(table)


# The technician's and the developer's commands, each defined beside what it drives.
from .analyze import command as _analyze  # noqa: E402 (registered after the group exists)
from .deploy import command as _deploy  # noqa: E402
from .fleet.command import command as _fleet  # noqa: E402
from .flash import command as _flash  # noqa: E402
from .ports import command as _ports  # noqa: E402
from .provision import command as _provision  # noqa: E402
from .security.command import group as _broker  # noqa: E402
from .vboard.command import command as _vboard  # noqa: E402

for _command in (_analyze, _ports, _flash, _deploy, _provision, _vboard, _fleet, _broker):
    cli.add_command(_command)


def main(argv=None):
    try:
        cli.main(args=argv, prog_name="floorwatch", standalone_mode=False)
    except click.UsageError as exc:
        click.echo("floorwatch: error: %s" % exc.format_message(), err=True)
        sys.exit(2)
    except click.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo("floorwatch: error: %s" % exc.format_message(), err=True)
        sys.exit(1)
    except (OSError, ValueError, BrokerError) as exc:  # e.g. the broker cannot be reached or started
        click.echo("floorwatch: error: %s" % exc, err=True)
        sys.exit(1)
