"""`floorwatch vboard`: put virtual boards on serial endpoints until Ctrl-C."""

import signal
import threading
from pathlib import Path

import click

from .. import boards
from ..broker import parse_broker_url
from . import VBoard


def _wifi(ctx, param, value):
    ssid, sep, password = value.partition(":")
    if not sep or not ssid:
        raise click.BadParameter("%r is not SSID:PASSWORD" % value)
    return ssid, password


@click.command("vboard")
@click.option("--listen", default="socket://127.0.0.1:0", show_default=True,
              help="socket://HOST:PORT (port 0: a free one; with --count, ports PORT, PORT+1, ...) or pty.")
@click.option("--pty", "use_pty", is_flag=True, help="Listen on a pseudo-terminal instead (same as --listen pty).")
@click.option("--board", "board_name", default="esp32-devkitc", show_default=True, type=click.Choice(boards.names()))
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 64), help="How many boards.")
@click.option("--dir", "state_dir", default="vboards", show_default=True, type=click.Path(file_okay=False),
              help="Where each board keeps its flash image and filesystem (DIR/<board>-<n>), across runs.")
@click.option("--firmware", type=click.Path(exists=True, dir_okay=False),
              help="A MicroPython .bin to put on each board's flash first, as `floorwatch flash` would.")
@click.option("--wifi", default="floorwatch-sim:sim-password", show_default=True, callback=_wifi,
              help="SSID:PASSWORD of the WiFi network the boards can see.")
@click.option("--broker", "broker_url", callback=lambda ctx, param, value: value and parse_broker_url(value),
              metavar="URL", help="mqtt://HOST[:PORT]: the broker of the boards' LAN; the nodes reach it "
                                  "whatever broker their config names.")
@click.option("--seed", default=1, show_default=True, type=int,
              help="Board n (from 1) gets its MAC and sensor signals from seed+n-1.")
@click.option("--echo", is_flag=True, help="Also print what each board prints.")
def command(listen, use_pty, board_name, count, state_dir, firmware, wifi, broker_url, seed, echo):
    """Virtual ESP32 boards: the ROM loader for esptool, MicroPython for mpremote and deploy."""
    started = []
    try:
        for index in range(count):
            directory = Path(state_dir) / ("%s-%d" % (board_name, index + 1))
            vboard = VBoard(board_name, state_dir=directory, listen=_nth(listen, use_pty, index),
                            wifi=wifi, seed=seed + index, echo=echo, broker=broker_url or None)
            started.append(vboard)
            if firmware:
                vboard.preload(Path(firmware).read_bytes())
            vboard.open()
            app = vboard.app
            click.echo("%s  %s  MAC %s  %s  (%s)" % (vboard.url, board_name, vboard.mac.hex(":"),
                                                    "MicroPython " + app["version"] if app else "blank flash",
                                                    directory))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for vboard in started:
            vboard.close()


def _nth(listen, use_pty, index):
    if use_pty or listen == "pty":
        return "pty"
    head, sep, port = listen.rpartition(":")
    if index and sep and port.isdigit() and int(port):
        return "%s:%d" % (head, int(port) + index)
    return listen
