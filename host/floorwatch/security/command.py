"""`floorwatch broker init` and `floorwatch broker run`: make a broker directory, run mosquitto on it.

    floorwatch broker init /srv/floorwatch-broker --fleet plant-a.toml --host broker.plant-a.lan
    floorwatch broker init ./broker --devices press-1 press-2 --site plant-a --dev-port 1883
    floorwatch broker add-account ./broker dashboard --role monitor
    floorwatch broker run ./broker
"""

import os
import pwd
import signal
import subprocess

import click

from ..broker import BrokerError, find_mosquitto
from ..provision import Identities, ProvisionError, fleet_identities
from .acl import ROLES
from .brokerdir import PID_FILE, BrokerDir, BrokerDirError

PORT = click.IntRange(1, 65535)


@click.group("broker")
def group():
    """Set up and run a mosquitto that lets in only our devices and tools."""


@group.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--fleet", "fleet_path", type=click.Path(dir_okay=False),
              help="Register every device in this fleet's secrets file (made by `floorwatch provision`).")
@click.option("--devices", "device_ids", multiple=True, metavar="ID",
              help="Register these devices with new passwords (repeatable; comma-separated lists too).")
@click.option("--site", help="The site of the --devices.")
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="A host name or IP address the broker certificate names (repeatable; "
                   "default: localhost, 127.0.0.1 and this machine's name).")
@click.option("--tls-port", default=8883, show_default=True, type=PORT, help="The TLS listener's port.")
@click.option("--dev-port", type=PORT, help="Also a plain listener on 127.0.0.1 at this port (passwords still apply).")
@click.option("--force", is_flag=True, help="Replace the CA, certificates and passwords of an existing directory.")
def init_command(directory, fleet_path, device_ids, site, hosts, tls_port, dev_port, force):
    """Make a broker directory (conf, passwords, ACL, CA, certificate).

    DIRECTORY gets mosquitto.conf, the password and ACL files, a development CA, the broker's
    certificate and the monitor and operator passwords; see docs/security.md."""
    ids = [one for listed in device_ids for one in listed.split(",") if one]
    if fleet_path and ids:
        raise click.UsageError("give --fleet or --devices, not both")
    if ids and not site:
        raise click.UsageError("--devices needs --site")
    if site and not ids:
        raise click.UsageError("--site goes with --devices")
    devices, source = [(site, device_id, None) for device_id in ids], None
    if fleet_path:
        devices, source = _fleet_devices(fleet_path)
    try:
        made = BrokerDir.init(directory, hosts=list(hosts) or None, tls_port=tls_port, dev_port=dev_port,
                              devices=devices, force=force)
    except BrokerDirError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo("broker directory %s: %d device(s)%s" % (made.path, len(devices), source or ""))
    if ids:
        click.echo("  their passwords: %s (keep it private)" % (made.path / "device-secrets.json"))
    click.echo("  account passwords: %s" % ", ".join(str(made.role_password_path(role)) for role in ROLES))
    click.echo("  CA for the nodes' config (broker.ca): %s" % made.ca_path)
    click.echo("  run it with:     floorwatch broker run %s" % made.path)


def _fleet_devices(fleet_path):
    """[(site, device_id, password)] of every identity in the fleet's secrets file, and a note
    saying where they came from."""
    try:
        site, prefix, secrets_path = fleet_identities(fleet_path)
        if not secrets_path.exists():
            raise click.UsageError("%s: no secrets file %s yet: provision boards first, or use --devices"
                                   % (fleet_path, secrets_path))
        known = Identities(secrets_path, prefix, {}).known
    except ProvisionError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        devices = [(site, entry["device_id"], entry["password"]) for entry in known.values()]
    except (AttributeError, KeyError, TypeError):
        raise click.UsageError("%s: not a secrets file of {mac: {device_id, password}}" % secrets_path) from None
    return devices, " from %s, site %s" % (secrets_path, site)


@group.command("add-account")
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the account may do.")
def add_account_command(directory, name, role):
    """Add a host-tool account NAME with a new password.

    One account is one connection at a time (a second login with the same name closes the first),
    so each tool that runs alongside another of its role gets its own. A running broker is told."""
    try:
        broker_dir = BrokerDir(directory)
        path = broker_dir.add_account(name, role)
    except BrokerDirError as exc:
        raise click.UsageError(str(exc)) from None
    told = broker_dir.reload()
    click.echo("account %s (%s): password in %s%s" % (name, role, path, "; broker reloaded" if told else ""))


@group.command("run")
@click.argument("directory", type=click.Path(file_okay=False))
def run_command(directory):
    """Run mosquitto on a broker directory, in the foreground.

    Its pid is in DIRECTORY/mosquitto.pid while it runs; Ctrl-C stops it."""
    try:
        broker_dir = BrokerDir(directory)
        binary = find_mosquitto()
    except (BrokerDirError, BrokerError) as exc:
        raise click.UsageError(str(exc)) from None
    _check_runs_as(broker_dir)
    if broker_dir.running_pid() is not None:
        raise click.ClickException("a mosquitto (pid %d) already runs on %s" % (broker_dir.running_pid(), broker_dir.path))
    log_path = broker_dir.path / "mosquitto.log"
    log_start = log_path.stat().st_size if log_path.exists() else 0
    pid_path = broker_dir.path / PID_FILE
    proc = subprocess.Popen([binary, "-c", str(broker_dir.path / "mosquitto.conf")], stdin=subprocess.DEVNULL)
    pid_path.write_text("%d\n" % proc.pid)
    click.echo("mosquitto (pid %d) runs on %s; log: %s; Ctrl-C stops it" % (proc.pid, broker_dir.path, log_path))
    # SIGTERM (systemd, kill) and SIGHUP (reload) are for mosquitto; Ctrl-C reaches it by itself,
    # as the terminal signals the whole foreground process group.
    forward = lambda signum, frame: proc.send_signal(signum)  # noqa: E731
    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)  # in case it came from elsewhere than the terminal
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pid_path.unlink(missing_ok=True)
    if code not in (0, -signal.SIGINT, -signal.SIGTERM):
        raise click.ClickException("mosquitto stopped with status %d: %s" % (code, _log_tail(log_path, log_start)))
    click.echo("mosquitto stopped")


def _check_runs_as(broker_dir):
    """Started as root, mosquitto switches to user mosquitto (unless its conf names another user)
    before it reads the 0600 password and ACL files: they must be that user's."""
    if os.geteuid() != 0:
        return
    conf = (broker_dir.path / "mosquitto.conf").read_text(encoding="utf-8")
    if any(line.split()[:1] == ["user"] for line in conf.splitlines()):
        return
    try:
        uid = pwd.getpwnam("mosquitto").pw_uid
    except KeyError:
        return  # no such user: mosquitto stays root
    if (broker_dir.path / "passwd").stat().st_uid != uid:
        raise click.UsageError("%s: run as root, mosquitto becomes user mosquitto, which cannot read this "
                               "directory's files: chown -R mosquitto: %s, or run it as their owner"
                               % (broker_dir.path, broker_dir.path))


def _log_tail(path, start, lines=3):
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    kept = [line.strip() for line in text.splitlines() if line.strip() and "should not be run as root" not in line]
    return " | ".join(kept[-lines:]) or "(nothing in %s)" % path
