"""The `floorwatch` command: a thin layer over the host package's subpackages.

User mistakes (bad options, unreadable files, a missing broker) end in one line on stderr and exit
status 2 (usage) or 1 (failure), never a traceback.
"""

import re
import sys

import click

from . import __version__
from .broker import BrokerError, parse_broker_url
from .sim.physics import MODES

SITE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _site(ctx, param, value):
    if not SITE_PATTERN.match(value):
        raise click.BadParameter("%r must be 1-32 of a-z, 0-9, '_' and '-', starting with a letter or digit" % value)
    return value


def _broker(ctx, param, value):
    if value is None:
        return None
    try:
        parse_broker_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc))
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="floorwatch")
def cli():
    """floorwatch: ESP32 sensor-node firmware tools."""


@cli.command()
@click.option("--boards", default=3, show_default=True, type=click.IntRange(1, 10000), help="How many boards to simulate.")
@click.option("--broker", "broker_url", callback=_broker, metavar="mqtt://HOST:PORT",
              help="Broker to publish to; without it a private mosquitto is started on a free loopback port.")
@click.option("--duration", default=0.0, type=click.FloatRange(0, None), metavar="SECONDS",
              help="Stop after this much simulated time (0: run until Ctrl-C).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, None), help="Seed for reproducible signals.")
@click.option("--site", default="sim", show_default=True, callback=_site, help="Site name in the topics.")
@click.option("--scenario", default="normal", show_default=True, type=click.Choice(MODES),
              help="What every board's machine does: stay healthy, or develop that fault after --onset.")
@click.option("--onset", default=600.0, show_default=True, type=click.FloatRange(0, None), metavar="SECONDS",
              help="Simulated seconds from power-on until the scenario's fault starts.")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(1, 1000), metavar="X",
              help="Run the boards' idle time X times faster than real time (1-1000).")
def sim(boards, broker_url, duration, seed, site, scenario, onset, speed):
    """Run simulated boards (the real firmware on CPython) with a live table."""
    from .sim import live

    views = live.run(boards, broker_url, duration, seed, site, scenario=scenario, speed=speed, onset_s=onset)
    online = sum(1 for v in views if v.records)
    click.echo("%d of %d boards published telemetry; %d records in all" % (online, boards, sum(len(v.records) for v in views)))


from .analyze import command as _analyze  # noqa: E402 (registered after the group exists)

cli.add_command(_analyze)


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
