"""`floorwatch fleet cmd`: send a command to a device, a site or the whole fleet, and collect the acks.

    floorwatch fleet cmd --broker mqtt://10.0.0.2 press-07 ping
    floorwatch fleet cmd --broker mqtt://10.0.0.2 plant-a/ set intervals.temp_s=5 thresholds.bearing.warn=75
    floorwatch fleet cmd --broker mqtt://10.0.0.2 '*' identify s=10 --json
    floorwatch fleet cmd --broker mqtts://operator@broker.plant-a --ca ca.crt --password-file operator.password \
        press-07 ping

The devices are the ones with a status on the broker (the retained `floorwatch/<site>/<id>/status`
topics, docs/contract.md), so a device's site comes from there and a target is checked against what
the fleet really is. Every command is checked before anything is sent: against the node's own
table of commands and their arguments (`COMMANDS` and `MAX_COMMAND` in firmware/node/commands.py),
by the node's own parser (`parse_command`: values and ranges), both read through
floorwatch.firmware_import so the host and the node agree by construction, and against the
contract's cmd schema. Each device gets a command of its own with a unique `id`, and
its ack is the message on its ack topic carrying that id.

A paho client of its own rather than floorwatch.observer.Observer or monitor.snapshot(): a command
needs each device's site (the topic it goes to), the moment the broker has finished handing over
the retained statuses, and the acks, all on one connection; the Observer keys devices by id alone,
and both take in every message of the fleet, so a live fleet's telemetry keeps them from settling.
"""

import json
import re
import threading
import time
import uuid
from functools import lru_cache

import click
import paho.mqtt.client as mqtt

from .. import contract, firmware_import
from ..security.access import AccessError, BrokerAccess, broker_access_options

# The broker hands over retained messages right after the SUBACK; once none has come for SETTLE_S
# it is done (a busy broker may pause, hence not less), but never wait longer than SETTLE_CAP_S.
SETTLE_S = 0.3
SETTLE_CAP_S = 3.0
CONNECT_TIMEOUT_S = 5.0
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # a site or device id (docs/contract.md, Topics)
TARGET_FORMS = "DEVICE, SITE/DEVICE, SITE/, SITE/* or *"
_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object", float: "a number", bool: "true or false",
               list: "a list"}


class CommandError(ValueError):
    """A target, command or argument that cannot be sent; str() is one line."""


# --- the command -------------------------------------------------------------------------------

def _value(text):
    """A KEY=VALUE value: JSON when it parses (5, 2.5, true, null, "5", [1, 2]), else the text itself."""
    def no_constant(name):  # NaN and Infinity are no JSON numbers: keep them as the words
        raise ValueError(name)
    try:
        return json.loads(text, parse_constant=no_constant)
    except ValueError:
        return text


def parse_args(pairs):
    """{key: value} from KEY=VALUE strings; dotted keys nest: a.b=1 a.c=x -> {"a": {"b": 1, "c": "x"}}."""
    args = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise CommandError("bad argument %r: expected KEY=VALUE (KEY may be dotted: intervals.temp_s=5)" % pair)
        node = args
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CommandError("argument %s is given both a value and keys under it" % ".".join(parts[:depth + 1]))
        if parts[-1] in node:
            raise CommandError("argument %s is given twice" % key)
        node[parts[-1]] = _value(text)
    return args


@lru_cache(maxsize=1)
def _node_commands():
    """The node's commands module (its COMMANDS table and parser), or None off a repository clone."""
    try:
        return firmware_import.load("node.commands")
    except ImportError:
        return None


def build(command, args=None, cmd_id=None):
    """The cmd message for one device, checked as the node and the contract would check it: the
    node's command table first (for messages that say what to type), then its own parser (values
    and ranges), then the contract's cmd schema."""
    body = {"id": cmd_id or uuid.uuid4().hex, "cmd": command}
    for key, value in (args or {}).items():
        if key in ("id", "cmd"):
            raise CommandError("argument %r is not allowed: the command sets it" % key)
        body[key] = value
    node = _node_commands()
    if node is not None:
        if command not in node.COMMANDS:
            raise CommandError("unknown command %r; the node knows %s" % (command, ", ".join(sorted(node.COMMANDS))))
        takes = node.COMMANDS[command]  # {argument: the type the node wants}
        for key, value in (args or {}).items():
            if key not in takes:
                known = ("; it takes " + ", ".join(takes)) if takes else "; it takes none"
                raise CommandError("%s takes no argument %r%s" % (command, key, known))
            if type(value) is not takes[key]:  # as the node checks: true is no integer
                scalar = not isinstance(value, (dict, list))
                hint = ' (quote it for text: %s=\'"%s"\')' % (key, value) if takes[key] is str and scalar else ""
                raise CommandError("%s: %s must be %s, not %s%s" % (
                    command, key, _TYPE_NAMES.get(takes[key], takes[key].__name__), json.dumps(value), hint))
        size = len(json.dumps(body, separators=(",", ":")).encode())
        if size > node.MAX_COMMAND:
            raise CommandError("the command is %d bytes; a node reads at most %d" % (size, node.MAX_COMMAND))
        try:  # the values, by the node's own parser: ranges, metric names, config fields
            node.parse_command(json.dumps(body, separators=(",", ":")))
        except node.CommandError as exc:
            raise CommandError(str(exc)) from None
    try:
        contract.validate("cmd", body)
    except contract.ContractError as exc:
        raise CommandError("invalid command: %s" % exc) from None
    return body


# --- the target --------------------------------------------------------------------------------

def parse_target(target):
    """(site, device) from a TARGET; None stands for "any"."""
    if target == "*":
        return None, None
    site, slash, device = target.rpartition("/")
    if not slash:
        site = None
    elif device in ("", "*"):
        device = None
    if (site is None or NAME.match(site)) and (device is None or NAME.match(device)):
        return site, device
    raise CommandError("bad target %r: expected %s" % (target, TARGET_FORMS))


def select(target, devices):
    """The sorted (site, device) pairs of `devices` (an iterable of them) that TARGET names."""
    site, device = parse_target(target)
    chosen = sorted(d for d in set(devices) if site in (None, d[0]) and device in (None, d[1]))
    if not chosen:
        raise CommandError("no device matches %r (%d with a status on the broker)" % (target, len(set(devices))))
    if site is None and device is not None and len(chosen) > 1:
        raise CommandError("device %r is on sites %s: name one, as SITE/%s" % (
            device, ", ".join(s for s, _ in chosen), device))
    return chosen


# --- the broker --------------------------------------------------------------------------------

class _Link:
    """One MQTT connection: the statuses the broker holds in, the commands out, their acks in."""

    def __init__(self, access):
        self.access = access
        self.host, self.port = access.host, access.port
        self.states = {}  # (site, device) -> the state its status says (None if it breaks the contract)
        self.acks = {}  # (site, device, command id) -> (the ack as parsed, its contract problem or None)
        self._changed = threading.Condition()
        self._subscribed_at = None
        self._status_at = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="floorwatch-cmd-" + uuid.uuid4().hex[:8])
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def open(self):
        try:
            self.access.connect(self.client, keepalive=30, timeout=CONNECT_TIMEOUT_S)
        except AccessError:
            raise  # already one line naming the broker
        except OSError as exc:
            raise OSError("cannot reach the broker at %s:%d: %s" % (self.host, self.port, exc.strerror or exc)) from None
        with self._changed:
            self._changed.wait_for(lambda: self._subscribed_at, CONNECT_TIMEOUT_S)
        if not self._subscribed_at:
            self.close()
            raise OSError("broker %s did not confirm the subscription" % self.access.where)
        return self

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()

    def devices(self):
        """Every (site, device) with a status, once the broker has handed over the retained ones."""
        with self._changed:
            cap = self._subscribed_at + SETTLE_CAP_S
            while True:
                now = time.monotonic()
                quiet_until = max(self._subscribed_at, self._status_at or 0) + SETTLE_S
                if now >= min(quiet_until, cap):
                    return dict(self.states)
                self._changed.wait(min(quiet_until, cap) - now)

    def publish(self, site, device, body):
        topic = "floorwatch/%s/%s/cmd" % (site, device)
        self.client.publish(topic, json.dumps(body, separators=(",", ":")), qos=1)

    def wait_acks(self, keys, timeout):
        """The acks once every (site, device, id) of `keys` has one, or when `timeout` s have passed."""
        with self._changed:
            self._changed.wait_for(lambda: set(keys) <= set(self.acks), timeout)
            return dict(self.acks)

    # paho callbacks (its network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([("floorwatch/+/+/status", 1), ("floorwatch/+/+/ack", 1)])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._changed:
            self._subscribed_at = time.monotonic()
            self._changed.notify_all()

    def _on_message(self, client, userdata, message):
        _, site, device, kind = message.topic.split("/")
        if not message.payload:  # a retained status being deleted
            return
        try:
            body, problem = contract.validate(kind, message.payload), None
        except contract.ContractError as exc:
            body, problem = None, str(exc)
        with self._changed:
            if kind == "status":
                self.states[(site, device)] = body["state"] if body else None
                self._status_at = time.monotonic()
            elif body is None:  # an ack that breaks the contract: keep what can be read of it
                try:
                    raw = json.loads(message.payload)
                except ValueError:
                    return
                if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                    self.acks[(site, device, raw["id"])] = (raw, problem)
            elif body["id"] is not None:
                self.acks[(site, device, body["id"])] = (body, None)
            self._changed.notify_all()


# --- the API -----------------------------------------------------------------------------------

def send(host, port, target, command, args=None, timeout=10):
    """Send `command` (with `args`, a dict) to every device TARGET names; wait up to `timeout` s for the acks.
    `host` may be a security.access.BrokerAccess (TLS, user, password), `port` then None.

    Returns one dict per device, sorted by site and device: device, site, state (what its status
    says: online, safe_mode, offline), ack (the ack, or None when none came in time), outcome
    ("ok", "error" or "timeout") and, for an ack that breaks the contract, problem.
    Raises CommandError (nothing sent) for a bad target or command, OSError when the broker fails.
    """
    build(command, args)  # a bad command fails here, before the broker is even asked
    parse_target(target)
    link = _Link(BrokerAccess.of(host, port)).open()
    try:
        states = link.devices()
        chosen = select(target, states)
        bodies = {dev: build(command, args) for dev in chosen}
        for (site, device), body in bodies.items():
            link.publish(site, device, body)
        acks = link.wait_acks([(site, device, b["id"]) for (site, device), b in bodies.items()], timeout)
    finally:
        link.close()
    results = []
    for (site, device), body in bodies.items():
        ack, problem = acks.get((site, device, body["id"]), (None, None))
        entry = {"device": device, "site": site, "state": states[(site, device)], "ack": ack}
        if problem:
            entry["problem"] = problem
        entry["outcome"] = "timeout" if ack is None else "ok" if ack.get("ok") is True and not problem else "error"
        results.append(entry)
    return results


def describe(entry, timeout):
    """One line for one device's result."""
    name = "%s/%s" % (entry["site"], entry["device"])
    ack = entry["ack"]
    if entry["outcome"] == "ok":
        detail = json.dumps(ack.get("result"), separators=(",", ":"))
    elif entry["outcome"] == "error":
        detail = ("ack breaks the contract: " + entry["problem"]) if entry.get("problem") else ack.get("error")
    else:
        detail = "no ack within %g s" % timeout
        if entry["state"] != "online":
            detail += " (its status says %s)" % (entry["state"] or "something unreadable")
    return "%s  %-7s  %s" % (name, entry["outcome"], detail)


# --- the command line --------------------------------------------------------------------------

@click.command("cmd")
@broker_access_options(help="The broker the fleet reports to: mqtt[s]://[USER@]HOST[:PORT]; log in as a user "
                            "allowed to publish commands (the operator role).")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0, None, min_open=True),
              metavar="SECONDS", help="How long to wait for the acks.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (every ack in full).")
@click.argument("target")
@click.argument("command_name", metavar="COMMAND")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
def command(broker, timeout, as_json, target, command_name, pairs):
    """Send COMMAND to TARGET and print each device's ack.

    TARGET is a device id, SITE/DEVICE, SITE/ (every device of a site) or '*' (the whole fleet),
    as the devices' statuses on the broker show them. KEY=VALUE pairs are the command's
    arguments; a dotted KEY nests (intervals.temp_s=5), a VALUE is JSON when it parses (5, true,
    null, "5"), else text. Exit status 0 when every device answered ok.
    """
    try:
        results = send(broker, None, target, command_name, parse_args(pairs), timeout)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc))
    if as_json:
        click.echo(json.dumps(results, indent=1))
    else:
        for entry in results:
            click.echo(describe(entry, timeout))
    failed = [e for e in results if e["outcome"] != "ok"]
    if failed:
        timed_out = sum(e["outcome"] == "timeout" for e in failed)
        raise click.ClickException("%d of %d device%s failed: %d error%s, %d timed out" % (
            len(failed), len(results), "" if len(results) == 1 else "s",
            len(failed) - timed_out, "" if len(failed) - timed_out == 1 else "s", timed_out))
