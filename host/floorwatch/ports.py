"""Serial ports: which boards are plugged in, and what a user's --port means.

`list_ports()` lists the USB serial ports pyserial sees (`serial.tools.list_ports.comports()`):
device, USB VID:PID, USB serial number, USB location and description, plus the chip's MAC when the
caller knows it (e.g. from the provisioning inventory: a mapping from USB serial number or USB
location to MAC). Ports that cannot carry a board are left out unless asked for: those without a
USB VID/PID (built-in UARTs, virtual ports) and Bluetooth ports such as macOS's
/dev/cu.Bluetooth-Incoming-Port, which tools picking "the first port" often trip over.

`resolve(spec)` turns what a user typed into a name pyserial, esptool and mpremote can open:

    /dev/ttyUSB0, COM3, ttyUSB0       a device (any port, listed or not, if it exists)
    socket://host:port, rfc2217://..  a pyserial URL, passed through
    sn:SERIAL                         the port whose USB serial number is SERIAL
    loc:1-1.4                         the port at that USB location (stable across re-plugging)
    mac:aa:bb:cc:dd:ee:ff             the port of the board with that MAC (needs `known`)

A spec that matches nothing, or more than one port, is a PortError naming the spec and listing
the ports there are. pyserial finds the ports; this module only filters and matches.
"""

import json
import os
import re

import click
from rich.console import Console
from rich.table import Table
from serial.tools import list_ports as pyserial_ports

URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
MAC = re.compile(r"^[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}$", re.IGNORECASE)


class PortError(ValueError):
    """A port spec that names no port, or several; str() is one line."""


FIELDS = ("device", "vid_pid", "serial_number", "location", "description", "mac")


def _is_board_candidate(port):
    text = "%s %s" % (port["device"], port["description"] or "")
    return port["vid_pid"] is not None and "bluetooth" not in text.lower()


def _summary(port):
    facts = [f for f in (port["vid_pid"], port["serial_number"] and "sn " + port["serial_number"],
                         port["location"] and "loc " + port["location"]) if f]
    return "%s (%s)" % (port["device"], ", ".join(facts)) if facts else port["device"]


def normalize_mac(text):
    """'AA-BB-CC-DD-EE-FF', 'aabbccddeeff', ... -> 'aa:bb:cc:dd:ee:ff'; PortError otherwise."""
    text = text.strip()
    if not MAC.match(text):
        raise PortError("%r is not a MAC address (expected aa:bb:cc:dd:ee:ff)" % text)
    digits = re.sub(r"[:-]", "", text).lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def _usb_location(location):
    # Linux reports "1-1.4:1.0" (USB path, then configuration.interface); the path is what a
    # user sees in dmesg and what stays put when the same board comes back.
    return location.split(":")[0] if location else None


def _mac_for(info, known):
    for key in (info.serial_number, _usb_location(info.location), info.location):
        if key and key in known:
            return normalize_mac(known[key])
    return None


def list_ports(known=None, include_all=False):
    """The serial ports here, sorted by device: dicts with FIELDS as keys (vid_pid like
    "10c4:ea60"; mac like "aa:bb:cc:dd:ee:ff" when `known` has it; None for what is unknown).

    known: {USB serial number or USB location: MAC} for boards whose MAC is on record.
    include_all: also list ports that cannot be a USB board (no VID/PID, Bluetooth).
    """
    known = known or {}
    found = []
    for info in pyserial_ports.comports():
        vid_pid = "%04x:%04x" % (info.vid, info.pid) if info.vid is not None else None
        description = info.description if info.description not in (None, "n/a") else None
        port = dict(zip(FIELDS, (info.device, vid_pid, info.serial_number or None,
                                 _usb_location(info.location), description, _mac_for(info, known))))
        if include_all or _is_board_candidate(port):
            found.append(port)
    return sorted(found, key=lambda p: p["device"])


def _there(ports):
    return "ports here: " + ", ".join(_summary(p) for p in ports) if ports else \
        "no USB serial ports here"


def _one(spec, matches, boards):
    if len(matches) == 1:
        return matches[0]["device"]
    if not matches:
        raise PortError("no port matches %r; %s" % (spec, _there(boards)))
    raise PortError("%r matches %d ports (%s); use loc:LOCATION to pick one" % (
        spec, len(matches), ", ".join(p["device"] for p in matches)))


def resolve(spec, known=None):
    """The device path or URL for a port spec (see the module docstring); PortError if none."""
    spec = (spec or "").strip()
    if not spec:
        raise PortError("no port given; " + _there(list_ports(known)))
    if URL.match(spec):
        return spec
    kind, _, value = spec.partition(":")
    kind = kind.lower()
    if kind in ("sn", "loc", "mac") and value:
        boards = list_ports(known)
        if kind == "sn":
            return _one(spec, [p for p in boards if p["serial_number"] == value], boards)
        if kind == "loc":
            return _one(spec, [p for p in boards if p["location"] == _usb_location(value)], boards)
        mac = normalize_mac(value)
        if not known:
            raise PortError("cannot find %r: no MACs on record (provision the board first, or "
                            "use sn:/loc:); %s" % (spec, _there(boards)))
        return _one(spec, [p for p in boards if p["mac"] == mac], boards)
    # A device, named in full or by its last part ("ttyUSB0", "com3"); a named port is used
    # even when list_ports() would skip it.
    everything = list_ports(known, include_all=True)
    for port in everything:
        if spec == port["device"] or spec.lower() == os.path.basename(port["device"]).lower():
            return port["device"]
    if os.path.exists(spec):  # a pty or /dev/serial/by-id link, which comports() leaves out
        return spec
    raise PortError("no serial port %r; %s" % (spec, _there(list_ports(known))))


def _table(ports):
    table = Table(title=None if ports else "no USB serial ports (try --all)")
    for column in ("port", "VID:PID", "serial", "location", "description", "MAC"):
        table.add_column(column)
    for p in ports:
        table.add_row(*(p[field] or "-" for field in FIELDS))
    return table


@click.command("ports")
@click.option("--all", "include_all", is_flag=True,
              help="Also list ports without a USB VID/PID and Bluetooth ports.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--inventory", type=click.Path(dir_okay=False), metavar="FILE",
              help="A provisioning inventory (JSON Lines): show the MACs it recorded for these USB devices.")
def command(include_all, as_json, inventory):
    """List the serial ports boards can be on (use sn:SERIAL or loc:LOCATION as --port)."""
    known = None
    if inventory:
        from .provision import Inventory  # the provisioner owns the inventory's format
        known = Inventory(inventory).known_macs()
    ports = list_ports(known=known, include_all=include_all)
    if as_json:
        click.echo(json.dumps(ports))
    else:
        Console().print(_table(ports))
