"""Provision a tray of boards at once: flash, deploy, give each an identity, prove it online.

    floorwatch provision --fleet plant-a.toml --all --firmware ESP32_GENERIC-v1.24.1.bin

Every board runs in its own thread through the same steps, each skipped when it is already done:
0. a board an earlier run provisioned on this port (or USB identity) whose node, by its retained
   status on the broker, runs this app with this config and MicroPython, is left alone: not even
   its serial port is opened, since stopping at the REPL would restart the node;
1. look at the board over its REPL (deploy.installed): which MicroPython, which app, which config,
   which MAC; a board that does not answer is taken for blank;
2. flash MicroPython (flash.flash) unless it already runs the image's release;
3. pick its identity: device id `<id_prefix>-<last 3 MAC bytes>` (or the one the fleet file pins
   for that port or MAC) and broker credentials, made once per MAC and kept in the secrets file
   (mode 0600), so a rerun gives every board the same identity;
4. deploy the firmware and its config (deploy.deploy), unless the board already has both;
5. wait for the node's `online` status on the broker, from this fleet's firmware version.
Then one line per board goes to the inventory (JSON Lines, append-only): the audit trail of who got
what, when, and how it ended. One board failing never stops the others; the summary lists them all.

Secrets: a board's password lives in the secrets file (0600) and in its node's config, nowhere
else: not in the inventory, the progress bars, the summary or an error line. With `[broker] dir`
each board's login is registered in that broker directory (`floorwatch broker init`) before its
node first connects, and a mosquitto running on it is told to reload. Every node config is checked
with the firmware's own credentials_problem() before it is deployed, as the node itself would.
Paths in the fleet file are relative to it.

The fleet file (TOML):

    [fleet]
    site = "plant-a"
    board = "esp32-devkitc"
    id_prefix = "press"
    firmware = "ESP32_GENERIC-v1.24.1.bin"   # optional; --firmware wins
    inventory = "inventory.jsonl"             # relative to the fleet file
    secrets = "fleet-secrets.json"
    [wifi]
    ssid = "plant-a-iot"
    password = "..."
    [broker]
    host = "broker.plant-a"
    tls = true                                # port 8883 unless given
    ca = "broker/ca.crt"                      # the CA (PEM) the nodes check the broker with
    dir = "broker"                            # optional: the broker dir to register the boards in
    user = "monitor"                          # provision's own login, to see nodes come online
    password_file = "broker/clients/monitor.password"
    [config]          # optional: merged into every node's config (intervals, thresholds, sensors, ...)
    [[boards]]        # optional: ports to use, and pinned ids
    port = "sn:0001"
    device_id = "press-7"
"""

import collections
import concurrent.futures
import contextlib
import copy
import functools
import hashlib
import json
import os
import threading
import time
import tomllib
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import boards, contract, deploy, esp_image, firmware_import, flash, ports
from .observer import Observer
from .security.access import PASSWORD_ENV, AccessError, BrokerAccess, read_password_file
from .security.passwd import new_password

ONLINE_TIMEOUT_S = 60
RETAINED_WAIT_S = 2  # for the broker to hand over the retained statuses after subscribing
LOOK_TIMEOUT_S = 4  # a running MicroPython answers Ctrl-C within a second or two
REBOOT_TIMEOUT_S = 15  # after flashing: the board boots, and a native-USB port comes back


class ProvisionError(ValueError):
    """A fleet file or an option that cannot be used; str() is one line."""


# --- the fleet file ---------------------------------------------------------------------------
def _read_toml(path):
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProvisionError("%s: cannot read it: %s" % (path, exc.strerror or exc)) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError("%s: not valid TOML: %s" % (path, exc)) from None


def fleet_identities(path):
    """(site, id_prefix, secrets file path) of a fleet file, from its [fleet] table alone:
    `floorwatch broker init --fleet` reads them before the CA that [broker] names exists."""
    path = Path(path)
    fleet = _read_toml(path).get("fleet")
    if not isinstance(fleet, dict):
        raise ProvisionError("%s: the [fleet] table is missing" % path)
    for key in ("site", "id_prefix", "secrets"):
        if key == "secrets" and key not in fleet:
            continue
        if not isinstance(fleet.get(key), str):
            raise ProvisionError("%s: [fleet] %s: %s" % (path, key, "missing" if fleet.get(key) is None
                                                         else "must be a str, not %r" % (fleet[key],)))
    return fleet["site"], fleet["id_prefix"], path.parent / fleet.get("secrets", "fleet-secrets.json")


def load_fleet(path):
    """The fleet file, checked: a dict with fleet, wifi, broker, config, boards, and `base` (its directory)."""
    path = Path(path)
    spec = _read_toml(path)

    def need(table, key, kind):
        value = spec.get(table, {}).get(key)
        if not isinstance(value, kind):
            raise ProvisionError("%s: [%s] %s: %s" % (path, table, key, "missing" if value is None else
                                                      "must be a %s, not %r" % (kind.__name__, value)))
        return value

    for table in ("fleet", "wifi", "broker"):
        if not isinstance(spec.get(table), dict):
            raise ProvisionError("%s: the [%s] table is missing" % (path, table))
    need("fleet", "site", str)
    need("fleet", "id_prefix", str)
    need("wifi", "ssid", str)
    need("broker", "host", str)
    _check_broker(spec, path)
    board = spec["fleet"].get("board", "esp32-devkitc")
    try:
        spec["board_def"] = boards.load(board)
    except boards.BoardError as exc:
        raise ProvisionError("%s: [fleet] board: %s" % (path, exc)) from None
    spec.setdefault("config", {})
    spec.setdefault("boards", [])
    spec["base"] = path.parent
    # A node config built from this file must pass the contract, or every board would fail alike.
    try:
        contract.validate("config", node_config(spec, "%s-000000" % spec["fleet"]["id_prefix"], "x"))
    except contract.ContractError as exc:
        raise ProvisionError("%s: the node config it makes is invalid: %s" % (path, exc)) from None
    return spec


# [broker] keys for provision itself, never copied into a node's config.
HOST_ONLY_KEYS = ("dir", "user", "password_file")


def _check_broker(spec, path):
    """[broker] tls/ca/dir/user/password_file: types, and the CA file(s) read (PEM text kept in
    spec["ca_pem"], by "broker" / "broker.backup")."""
    broker = spec["broker"]
    spec["ca_pem"] = {}
    for field, server in (("broker", broker), ("broker.backup", broker.get("backup"))):
        if not isinstance(server, dict):
            continue
        tls, ca = server.get("tls", False), server.get("ca")
        if not isinstance(tls, bool):
            raise ProvisionError("%s: [%s] tls: must be true or false, not %r" % (path, field, tls))
        if ca is not None and not isinstance(ca, str):
            raise ProvisionError("%s: [%s] ca: must be the path of the CA certificate (PEM), not %r" % (path, field, ca))
        if tls and ca is None:
            raise ProvisionError("%s: [%s] tls = true needs ca = the CA certificate (PEM) file the nodes check "
                                 "the broker's certificate with" % (path, field))
        if ca is not None and not tls:
            raise ProvisionError("%s: [%s] ca is for TLS: add tls = true" % (path, field))
        if ca is not None:
            try:
                pem = (path.parent / ca).read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ProvisionError("%s: [%s] ca: cannot read %s: %s" % (
                    path, field, path.parent / ca, getattr(exc, "strerror", None) or exc)) from None
            if "-----BEGIN CERTIFICATE-----" not in pem:
                raise ProvisionError("%s: [%s] ca: %s holds no PEM certificate" % (path, field, path.parent / ca))
            spec["ca_pem"][field] = pem
    for key in HOST_ONLY_KEYS:
        if key in broker and not isinstance(broker[key], str):
            raise ProvisionError("%s: [broker] %s: must be a string, not %r" % (path, key, broker[key]))
    if "password_file" in broker and "user" not in broker:
        raise ProvisionError("%s: [broker] password_file needs user = the name to log in with" % path)


def _file(spec, key, default):
    return spec["base"] / spec["fleet"].get(key, default)


def broker_dir(spec):
    """The BrokerDir of [broker] dir, or None when the fleet file names none."""
    if not spec["broker"].get("dir"):
        return None
    from .security.brokerdir import BrokerDir, BrokerDirError  # late: cryptography is only needed here
    try:
        return BrokerDir(spec["base"] / spec["broker"]["dir"])
    except BrokerDirError as exc:
        raise ProvisionError("[broker] dir: %s" % exc) from None


def broker_access(spec, directory=None):
    """Provision's own login, to watch nodes come online: [broker] user and password_file, else
    the monitor role of [broker] dir, else anonymous."""
    broker = spec["broker"]
    tls = broker.get("tls", False)
    port = broker.get("port", 8883 if tls else 1883)
    ca = str(spec["base"] / broker["ca"]) if broker.get("ca") else None
    user, password = broker.get("user"), None
    if broker.get("password_file"):
        try:
            password = read_password_file(spec["base"] / broker["password_file"])
        except AccessError as exc:
            raise ProvisionError("[broker] password_file: %s" % exc) from None
    elif user is None and directory is not None:
        user, password = "monitor", directory.role_password("monitor")
    elif user is not None:
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            raise ProvisionError("[broker] user %r needs password_file (or %s)" % (user, PASSWORD_ENV))
    return BrokerAccess(broker["host"], port, tls=tls, ca=ca, user=user, password=password)


def node_config(spec, device_id, password):
    """One node's config.json: the fleet's [config] with this board's identity, WiFi and broker."""
    cfg = copy.deepcopy(spec["config"])
    wanted = {k: v for k, v in copy.deepcopy(spec["broker"]).items() if k not in HOST_ONLY_KEYS}
    broker = {"port": 8883 if wanted.get("tls") else 1883, "tls": False, **wanted, "user": device_id,
              "password": password}
    if "broker" in spec.get("ca_pem", {}):
        broker["ca"] = spec["ca_pem"]["broker"]
    if broker.get("backup"):  # the same identity on the backup broker
        backup = broker["backup"]
        backup.setdefault("port", 8883 if backup.get("tls") else 1883)
        backup.update(user=device_id, password=password)
        if "broker.backup" in spec.get("ca_pem", {}):
            backup["ca"] = spec["ca_pem"]["broker.backup"]
    cfg.update(device_id=device_id, site=spec["fleet"]["site"], wifi=dict(spec["wifi"]), broker=broker)
    cfg.setdefault("sensors", copy.deepcopy(spec["board_def"]["default_sensors"]))
    cfg.setdefault("led", boards.status_led(spec["board_def"]))
    return cfg


# --- identities --------------------------------------------------------------------------------
class Identities:
    """Device ids and broker passwords by MAC, kept in the secrets file (0600) across runs."""

    def __init__(self, path, prefix, pinned):
        self.path = Path(path)
        self.prefix = prefix
        self.pinned = pinned  # port or "mac:.." -> device id
        self._lock = threading.Lock()
        try:
            self.known = json.loads(self.path.read_text())
        except FileNotFoundError:
            self.known = {}
        except (OSError, ValueError) as exc:
            raise ProvisionError("%s: cannot use it: %s" % (self.path, exc)) from None

    def of(self, mac, port):
        with self._lock:
            entry = self.known.get(mac)
            wanted = self.pinned.get(port) or self.pinned.get("mac:" + mac)
            if entry is None or (wanted and entry["device_id"] != wanted):
                device_id = wanted or "%s-%s" % (self.prefix, mac.replace(":", "")[-6:])
                taken = {e["device_id"] for m, e in self.known.items() if m != mac}
                if device_id in taken:
                    raise ProvisionError("device id %s is already another board's" % device_id)
                entry = {"device_id": device_id, "password": new_password()}
                self.known[mac] = entry
                self._save()
            return entry["device_id"], entry["password"]

    def _save(self):
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self.known, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


class Inventory:
    """The audit trail: one JSON line per board per run, appended, never rewritten."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, record):
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")

    def records(self):
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise ProvisionError("%s: cannot read it: %s" % (self.path, getattr(exc, "strerror", None) or exc)) from None
        records = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise ProvisionError("%s line %d: not a JSON record" % (self.path, number)) from None
        return records

    def known_macs(self):
        """USB serial number / location -> MAC, from earlier runs (for `floorwatch ports`)."""
        return {r["usb"]: r["mac"] for r in self.records() if r.get("usb") and r.get("mac")}


class History:
    """What earlier runs learnt of each port: its board's last good record, found by the board's
    USB identity when it has one, so a renumbered tty still matches. The identity is the USB serial
    number, unless another port here has the same one (cheap bridges share theirs): then the USB
    location."""

    def __init__(self, inventory, listed):
        serials = collections.Counter(p["serial_number"] for p in listed)
        self._usb = {p["device"]: p["serial_number"] if p["serial_number"] and serials[p["serial_number"]] == 1
                     else p["location"] for p in listed}
        self._last = {}
        for record in inventory.records():
            if record.get("result") in ("ok", "unchanged") and record.get("mac"):
                self._last[record.get("usb") or record["port"]] = record

    def usb_of(self, port):
        return self._usb.get(port)

    def last(self, port):
        return self._last.get(self.usb_of(port) or port)


# --- one board -----------------------------------------------------------------------------------
def provision_board(port, spec, image, build, identities, observer, history,
                    report=lambda stage, done=0, total=0: None, directory=None):
    """Bring the board on `port` to the fleet's state; returns its inventory record, with the
    seconds each stage took in `stages` and the stages that wrote to the board in `steps`."""
    board_def = spec["board_def"]
    record = {"port": port, "usb": history.usb_of(port), "board": board_def["id"], "result": "failed",
              "error": None, "steps": [], "stages": {}, "version": build["version"], "app": build["app"],
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    stage = functools.partial(_stage, record, report)
    started = time.monotonic()
    try:
        with stage("checking"):
            settled = _settled(port, spec, image, build, identities, observer, history)
        if settled is not None:  # the node says it runs all of it: leave the board alone
            record.update(settled, result="unchanged")
            return record
        with stage("looking"):
            found = _look(port)
        wanted_mp = image["version"] if image else None
        if found is None or (wanted_mp and found["micropython"] != wanted_mp):
            if image is None:
                raise ProvisionError("the board runs no MicroPython: give --firmware")
            with stage("flashing"):
                result = flash.flash_in_process(port, board_def["id"], image["path"],
                                                progress=lambda done, total, _: report("flashing", done, total))
            record["steps"].append("flash")
            record.update(chip=result["chip"], revision=result.get("revision"), firmware_md5=result["md5"])
            with stage("rebooting"):
                found = _look(port, wait=True)
            if found is None:
                raise ProvisionError("no MicroPython REPL after flashing")
        record.update(mac=found["mac"], micropython=found["micropython"])
        device_id, password = identities.of(found["mac"], port)
        record["device_id"] = device_id
        cfg = node_config(spec, device_id, password)
        _check_credentials(cfg)
        if directory is not None:
            with stage("registering"):
                if directory.add_device(spec["fleet"]["site"], device_id, password):
                    directory.reload()  # a mosquitto running on the dir reads its passwd and ACL again
        since = time.time()
        if found["app"] != build["app"] or found["config_sha256"] != deploy.config_sha256(cfg):
            with stage("deploying"):
                deploy.deploy(port, cfg, board=board_def["id"],
                              progress=lambda done, total, _: report("deploying", done, total))
            record["steps"].append("deploy")
        with stage("waiting online"):
            _wait_online(observer, device_id, build["version"], since)
        record["result"] = "ok"
    except Exception as exc:  # one board's trouble is its own line in the summary, never the others'
        record["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    finally:
        record["seconds"] = round(time.monotonic() - started, 1)
    return record


@contextlib.contextmanager
def _stage(record, report, name):
    report(name)
    started = time.monotonic()
    try:
        yield
    finally:
        record["stages"][name] = round(time.monotonic() - started, 2)


def _settled(port, spec, image, build, identities, observer, history):
    """What the inventory knows of the board on `port` if its node, as its retained status on the
    broker says, is online with this app, this config and the wanted MicroPython; else None.
    Nothing touches the board: opening its REPL would stop the node."""
    known = history.last(port)
    if known is None or known.get("mac") not in identities.known:
        return None
    device_id, password = identities.of(known["mac"], port)
    cfg_id = deploy.config_sha256(node_config(spec, device_id, password))[:12]
    wanted_mp = image["version"] if image else known.get("micropython")

    def settled(obs):
        view = obs.devices.get(device_id)
        status = view.status if view else None
        return bool(status and status["state"] == "online" and status.get("fw") == build["version"]
                    and status.get("app") == build["app"][:12] and status.get("cfg") == cfg_id
                    and status.get("mp") == wanted_mp)
    if not observer.wait_for(settled, RETAINED_WAIT_S):
        return None
    return {key: known.get(key) for key in ("mac", "chip", "revision", "micropython", "device_id")}


@functools.lru_cache(maxsize=1)
def _node_config():
    return firmware_import.load("node.config")


def _check_credentials(cfg):
    """The node's own verdict on its broker login(s) (node/config.py credentials_problem), so a
    config the node would refuse to connect with is never deployed. One line, no password."""
    check = _node_config().credentials_problem
    for field, server in (("broker", cfg["broker"]), ("broker.backup", cfg["broker"].get("backup"))):
        problem = server and check(server, field)
        if problem:
            raise ProvisionError("config of %s: %s" % (cfg["device_id"], problem))


def _look(port, wait=False):
    """What the board runs (deploy.installed), or None when no MicroPython answers: within
    LOOK_TIMEOUT_S (a blank board never will), or REBOOT_TIMEOUT_S right after flashing."""
    try:
        return deploy.installed(port, timeout=REBOOT_TIMEOUT_S if wait else LOOK_TIMEOUT_S)
    except deploy.DeployError:
        return None


def _wait_online(observer, device_id, version, since):
    def online(obs):
        view = obs.devices.get(device_id)
        return (view is not None and view.status is not None and view.status["state"] == "online"
                and view.status.get("fw") == version and view.status_at >= since)
    if not observer.wait_for(online, ONLINE_TIMEOUT_S):
        view = observer.devices.get(device_id)
        seen = view.status["state"] if view and view.status else "nothing"
        raise ProvisionError("node %s not online on the broker within %d s (its status: %s)"
                             % (device_id, ONLINE_TIMEOUT_S, seen))


# --- a fleet ---------------------------------------------------------------------------------------
def provision(spec, port_list, firmware=None, report=None):
    """Provision every port in parallel; returns the inventory records, in port order."""
    if not port_list:
        raise ProvisionError("no boards to provision: name them with --ports, or use --all")
    image = _image(spec, firmware)
    build = deploy.build_app(spec["board_def"]["mpy_arch"])  # once, before the boards' threads
    pinned = {}  # port, or "mac:<aa:bb:..>", -> the device id the fleet file gives it
    for entry in spec["boards"]:
        if entry.get("device_id"):
            where = entry.get("mac") or entry.get("port", "")
            if where.startswith("mac:") or entry.get("mac"):
                key = "mac:" + ports.normalize_mac(where[4:] if where.startswith("mac:") else where)
            else:
                key = ports.resolve(where)
            pinned[key] = entry["device_id"]
    identities = Identities(_file(spec, "secrets", "fleet-secrets.json"), spec["fleet"]["id_prefix"], pinned)
    inventory = Inventory(_file(spec, "inventory", "inventory.jsonl"))
    history = History(inventory, ports.list_ports(include_all=True))
    directory = broker_dir(spec)
    access = broker_access(spec, directory)
    observer = Observer(access, site=spec["fleet"]["site"])
    try:
        observer.start()
    except AccessError:
        raise  # already one line naming the broker and the user
    except OSError as exc:
        raise ProvisionError("cannot reach the broker at %s (%s)" % (access.where, exc.strerror or exc)) from None
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(port_list)) as pool:
            def one(port):  # each board's record is written as soon as it is done
                record = provision_board(port, spec, image, build, identities, observer, history,
                                         (lambda stage, done=0, total=0: report(port, stage, done, total))
                                         if report else (lambda *a, **k: None), directory)
                inventory.append(record)
                return record
            return list(pool.map(one, port_list))
    finally:
        observer.stop()


def _image(spec, firmware):
    """The MicroPython image to flash where needed: path, chip, release; None if none was given."""
    path = firmware or spec["fleet"].get("firmware")
    if not path:
        return None
    path = Path(path) if firmware else spec["base"] / path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProvisionError("firmware %s: cannot read it: %s" % (path, exc.strerror or exc)) from None
    chip = esp_image.chip_of(data)
    if chip != spec["board_def"]["chip"]:
        raise ProvisionError("firmware %s is for %s, but the fleet's boards are %s" % (path, chip, spec["board_def"]["chip"]))
    app = esp_image.app_info(b"\xff" * spec["board_def"]["image_offset"] + data, spec["board_def"]["image_offset"])
    if app is None or app["project"] != "micropython":
        raise ProvisionError("firmware %s is not a MicroPython image" % path)
    return {"path": str(path), "chip": chip, "version": app["version"].lstrip("v"),
            "md5": hashlib.md5(data).hexdigest()}


# --- the command ------------------------------------------------------------------------------------

RESULT_STYLE = {"ok": "green", "unchanged": "cyan", "failed": "bold red"}


@click.command("provision")
@click.option("--fleet", "fleet_path", required=True, type=click.Path(dir_okay=False), help="The fleet file (TOML).")
@click.option("--ports", "port_specs", multiple=True, metavar="PORT",
              help="A board's port (repeatable; comma-separated lists too): path, sn:, loc:, mac: or URL.")
@click.option("--all", "all_ports", is_flag=True, help="Every USB serial port there is.")
@click.option("--firmware", type=click.Path(dir_okay=False), help="MicroPython .bin for boards that need it.")
def command(fleet_path, port_specs, all_ports, firmware):
    """Flash, deploy and register many boards in parallel, and prove each one online."""
    spec = load_fleet(fleet_path)
    known = Inventory(_file(spec, "inventory", "inventory.jsonl")).known_macs()
    wanted = [p for spec_ in port_specs for p in spec_.split(",") if p]
    wanted += [b["port"] for b in spec["boards"] if b.get("port")]
    if all_ports:
        wanted += [p["device"] for p in ports.list_ports(known=known)]
    port_list = list(dict.fromkeys(ports.resolve(p, known=known) for p in wanted))
    console = Console()
    columns = (TextColumn("{task.fields[port]:<24}"), TextColumn("{task.description:<15}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bars:
        tasks = {port: bars.add_task("waiting", port=port, total=1) for port in port_list}

        def report(port, stage, done=0, total=0):
            bars.update(tasks[port], description=stage, completed=done if total else 0, total=total or 1)

        records = provision(spec, port_list, firmware, report)
        for record in records:
            bars.update(tasks[record["port"]], description=record["result"], completed=1, total=1)
    table = Table("port", "device", "MAC", "result", "steps", "s", "error", title="provisioning")
    for r in records:
        style = RESULT_STYLE[r["result"]]
        table.add_row(r["port"], r.get("device_id") or "-", r.get("mac") or "-", "[%s]%s[/]" % (style, r["result"]),
                      "+".join(r["steps"]) or "-", "%.1f" % r["seconds"], r["error"] or "")
    console.print(table)
    failed = [r for r in records if r["result"] == "failed"]
    if failed:
        raise click.ClickException("%d of %d boards failed (see the table; inventory: %s)"
                                   % (len(failed), len(records), _file(spec, "inventory", "inventory.jsonl")))
