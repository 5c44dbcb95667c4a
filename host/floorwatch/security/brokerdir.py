"""A broker directory: everything one mosquitto needs to let only our devices and tools in.

    DIR/mosquitto.conf          listeners, auth, limits (from conf_text)
    DIR/passwd                  password entries of the devices and roles (0600)
    DIR/acl                     who may publish and subscribe where (see acl.py)
    DIR/ca.crt, DIR/ca.key      the development CA (key 0600); ca.crt goes into every node's config
    DIR/broker.crt, broker.key  the broker's TLS certificate and key (0600), signed by the CA
    DIR/devices.json            the registry: {device_id: site}, no secrets
    DIR/device-secrets.json     {device_id: password} for the devices whose passwords we made (0600)
    DIR/accounts.json           the host tools' accounts: {name: role}; `monitor` and `operator` to start
    DIR/clients/<name>.password each account's password (0600)
    DIR/data/, mosquitto.log    mosquitto's persistence and log; DIR/mosquitto.pid while it runs
    DIR/.lock                   held while the passwd, acl and devices.json are rewritten

The passwd and acl files are derived from devices.json, accounts.json and the stored hashes and
are rewritten whole (atomically) when a device or account is added; `reload()` makes a running
mosquitto read them again.

Every client's id is its user name (see CLIENT_ID_IS_USER), so one account is one connection at a
time: a second login with the same name closes the first. Each host tool that runs alongside
another of the same role gets an account of its own (`add_account`).
"""

import contextlib
import fcntl
import json
import os
import signal
from pathlib import Path

from . import acl, passwd, pki
from .acl import ROLES
from .passwd import new_password

CONF = "mosquitto.conf"
REGISTRY = "devices.json"
ACCOUNTS = "accounts.json"
DEVICE_SECRETS = "device-secrets.json"
PID_FILE = "mosquitto.pid"
# Our largest messages are a node's telemetry (about 2 KB) and an ack carrying diag (about 3 KB);
# commands are at most 512 bytes. 16 KB leaves room to grow and still keeps one client from making
# the broker buffer megabytes (mosquitto's default allows 256 MB).
MAX_PACKET_SIZE = 16384
# Nodes use keepalives of 5..3600 s (node/config.py), host tools 60 s. An MQTT 5 client asking for
# more is told to use this; mosquitto 2.0.11 still lets MQTT 3.1.1 clients have theirs (later 2.0
# releases refuse them, and keepalive 0 too: none of our clients uses either).
MAX_KEEPALIVE = 3600
# A client's id is its user name, so nobody can take over (disconnect) another's session. It is a
# listener setting: before the first `listener` line it would open mosquitto's default listener,
# plain MQTT on port 1883 of every interface.
CLIENT_ID_IS_USER = "use_username_as_clientid true"


class BrokerDirError(ValueError):
    """A broker directory that cannot be made or used; str() is one line."""


class BrokerDir:
    """An existing broker directory (made by BrokerDir.init)."""

    def __init__(self, path):
        self.path = Path(path)
        self.ca_path = self.path / "ca.crt"
        missing = [name for name in (CONF, REGISTRY, "passwd", "acl", "ca.crt") if not (self.path / name).is_file()]
        if missing:
            raise BrokerDirError("%s is not a broker directory (no %s): make one with `floorwatch broker init %s`"
                                 % (self.path, missing[0], self.path))

    def __repr__(self):
        return "BrokerDir(%r)" % str(self.path)

    # --- making one ---

    @classmethod
    def init(cls, path, hosts=None, tls_port=8883, dev_port=None, devices=(), force=False):
        """Make a broker directory at `path` with a new CA, broker certificate and role passwords,
        and register `devices` (site, device_id, password or None to make one). Refuses a path that
        exists and is not empty unless `force` (which replaces everything but mosquitto's data)."""
        path = Path(path)
        hosts = list(dict.fromkeys(hosts or pki.default_hosts()))
        wanted = _checked_devices(devices)
        for port, what in ((tls_port, "TLS port"), (dev_port, "dev port")):
            if port is not None and not (type(port) is int and 0 < port < 65536):
                raise BrokerDirError("%s %r is not a port number (1-65535)" % (what, port))
        if tls_port == dev_port:
            raise BrokerDirError("the TLS port and the dev port are both %d" % tls_port)
        if path.exists() and not path.is_dir():
            raise BrokerDirError("%s exists and is not a directory" % path)
        if path.is_dir() and any(path.iterdir()) and not force:
            raise BrokerDirError("%s exists already and is not empty: pick a new directory, or --force to replace "
                                 "its CA, certificates and passwords" % path)
        running = _running_pid(path)
        if running is not None:
            raise BrokerDirError("a mosquitto (pid %d) runs on %s: stop it first" % (running, path))
        try:
            ca_key, ca_cert = pki.make_ca()
            broker_key, broker_cert = pki.make_broker_cert(ca_key, ca_cert, hosts)
        except ValueError as exc:
            raise BrokerDirError("cannot make the broker certificate: %s" % exc) from None
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            (path / "clients").mkdir(mode=0o700, exist_ok=True)
            (path / "data").mkdir(mode=0o700, exist_ok=True)
            pki.write_key(path / "ca.key", ca_key)
            pki.write_cert(path / "ca.crt", ca_cert)
            pki.write_key(path / "broker.key", broker_key)
            pki.write_cert(path / "broker.crt", broker_cert)
            hashes = {}
            accounts = {role: role for role in ROLES}
            for name in accounts:
                password = new_password()
                passwd.write_private(path / "clients" / ("%s.password" % name), password + "\n")
                hashes[name] = passwd.hash_password(password)
            made = {device_id: password or new_password() for site, device_id, password in wanted}
            hashes.update((device_id, passwd.hash_password(password)) for device_id, password in made.items())
            registry = {device_id: site for site, device_id, _ in wanted}
            generated = {device_id: made[device_id] for site, device_id, password in wanted if password is None}
            passwd.write_passwd(path / "passwd", hashes)
            passwd.write_private(path / "acl", acl.acl_text(registry, accounts))
            _write_json(path / DEVICE_SECRETS, generated, private=True)
            _write_json(path / REGISTRY, registry)
            _write_json(path / ACCOUNTS, accounts)
            with contextlib.suppress(FileNotFoundError):
                (path / PID_FILE).unlink()  # a --force over a stopped broker's leftover
            _write_text(path / CONF, _conf_text(path, tls_port, dev_port, path / "data", path / "mosquitto.log"))
        except OSError as exc:
            raise BrokerDirError("%s: cannot write the broker directory: %s" % (path, exc.strerror or exc)) from None
        return cls(path)

    # --- what is in it ---

    def devices(self):
        """{device_id: site} of every registered device."""
        return _read_json(self.path / REGISTRY)

    def device_secrets(self):
        """{device_id: password} of the devices whose passwords this directory made."""
        path = self.path / DEVICE_SECRETS
        return _read_json(path) if path.exists() else {}

    def accounts(self):
        """{name: role} of the host tools' accounts."""
        path = self.path / ACCOUNTS
        return _read_json(path) if path.exists() else {role: role for role in ROLES}

    def role_password(self, name):
        """The password of account `name` (`monitor` and `operator` are made with the directory)."""
        return self.role_password_path(name).read_text(encoding="utf-8").strip()

    def role_password_path(self, name):
        """The file holding account `name`'s password (for --password-file)."""
        if name not in self.accounts():
            raise BrokerDirError("unknown account %r: the accounts are %s (add one with `floorwatch broker "
                                 "add-account`)" % (name, ", ".join(sorted(self.accounts()))))
        return self.path / "clients" / ("%s.password" % name)

    # --- changing it ---

    def add_device(self, site, device_id, password=None):
        """Register device `device_id` at `site` with `password` (None: keep the one it has, or
        make one and keep it in device-secrets.json). Rewrites passwd and acl atomically; True when
        anything changed, False when it was there already just so. reload() to tell mosquitto."""
        ((site, device_id, password),) = _checked_devices([(site, device_id, password)])
        with self._locked():
            registry, accounts = self.devices(), self.accounts()
            if device_id in accounts:
                raise BrokerDirError("device_id: %r is the name of a host-tool account; pick another" % device_id)
            hashes = passwd.read_passwd(self.path / "passwd")
            known = device_id in hashes
            if (registry.get(device_id) == site and known
                    and (password is None or passwd.verify_password(password, hashes[device_id]))):
                return False
            if password is None and not known:
                password = new_password()
                generated = self.device_secrets()
                generated[device_id] = password
                _write_json(self.path / DEVICE_SECRETS, generated, private=True)
            if password is not None:
                hashes[device_id] = passwd.hash_password(password)
            registry[device_id] = site
            passwd.write_passwd(self.path / "passwd", hashes)
            passwd.write_private(self.path / "acl", acl.acl_text(registry, accounts))
            _write_json(self.path / REGISTRY, registry)
            return True

    def add_account(self, name, role):
        """A host-tool account `name` with the rights of `role`, and a new password in
        clients/<name>.password (returned). An account that exists with that role is kept as it is."""
        if role not in ROLES:
            raise BrokerDirError("unknown role %r: the roles are %s" % (role, ", ".join(ROLES)))
        try:
            acl.check_name(name, "account")
        except ValueError as exc:
            raise BrokerDirError(str(exc)) from None
        with self._locked():
            accounts, registry = self.accounts(), self.devices()
            if name in registry:
                raise BrokerDirError("account: %r is a device's name; pick another" % name)
            if accounts.get(name) == role:
                return self.role_password_path(name)
            if name in accounts:
                raise BrokerDirError("account %r exists already with role %s" % (name, accounts[name]))
            hashes = passwd.read_passwd(self.path / "passwd")
            password = new_password()
            passwd.write_private(self.path / "clients" / ("%s.password" % name), password + "\n")
            hashes[name] = passwd.hash_password(password)
            accounts[name] = role
            passwd.write_passwd(self.path / "passwd", hashes)
            passwd.write_private(self.path / "acl", acl.acl_text(registry, accounts))
            _write_json(self.path / ACCOUNTS, accounts)
        return self.role_password_path(name)

    def reload(self):
        """Make the mosquitto running on this directory (its pid in DIR/mosquitto.pid) read the
        password and ACL files again (SIGHUP). False when none runs."""
        pid = self.running_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return False
        return True

    def running_pid(self):
        """The pid of the mosquitto running on this directory, or None."""
        return _running_pid(self.path)

    # --- mosquitto's configuration ---

    def conf_text(self, tls_port, dev_port, data_dir, log_path, tls_address=None):
        """mosquitto.conf for this directory: a TLS listener on `tls_port` (all addresses, or
        `tls_address`) and, when `dev_port`, a plain listener on 127.0.0.1 only; both take only
        known users, under the ACL. Persistence in `data_dir` (None: none), the log to `log_path`."""
        return _conf_text(self.path, tls_port, dev_port, data_dir, log_path, tls_address)

    @contextlib.contextmanager
    def _locked(self):
        """One writer at a time (e.g. provisioning threads adding devices)."""
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _conf_text(path, tls_port, dev_port, data_dir, log_path, tls_address=None):
    """BrokerDir.conf_text for the directory at `path`."""
    p = Path(path).resolve()
    lines = [
        "# mosquitto configuration for floorwatch, written by `floorwatch broker init`.",
        "# Run it with `floorwatch broker run %s`; after changing devices, send it SIGHUP." % p,
        "per_listener_settings false",
        "allow_anonymous false",
        "password_file %s" % (p / "passwd"),
        "acl_file %s" % (p / "acl"),
        "max_keepalive %d" % MAX_KEEPALIVE,
        "max_packet_size %d" % MAX_PACKET_SIZE,
        "persistent_client_expiration 30d",
    ]
    if data_dir is None:
        lines.append("persistence false")
    else:
        lines += ["persistence true", "persistence_location %s" % os.path.join(os.path.abspath(data_dir), "")]
    lines += [
        "log_dest file %s" % os.path.abspath(log_path),
        "log_type error", "log_type warning", "log_type notice", "log_type information",
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "",
        "listener %d%s" % (tls_port, " " + tls_address if tls_address else ""),
        "cafile %s" % (p / "ca.crt"),
        "certfile %s" % (p / "broker.crt"),
        "keyfile %s" % (p / "broker.key"),
        "tls_version tlsv1.2",
        CLIENT_ID_IS_USER,
    ]
    if dev_port is not None:
        lines += ["", "# Plain MQTT for development on this machine only; still passwords and ACL.",
                  "listener %d 127.0.0.1" % dev_port, CLIENT_ID_IS_USER]
    return "\n".join(lines) + "\n"


def _running_pid(path):
    """The pid in path/mosquitto.pid if a mosquitto has it. A stale pid file whose number now
    belongs to another process gives None (a SIGHUP would kill that process)."""
    try:
        pid = int((Path(path) / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"mosquitto" not in f.read():
                return None
    except FileNotFoundError:
        return None  # no such process
    except OSError:
        pass  # no /proc here: trust the pid file
    return pid


def _checked_devices(devices):
    """[(site, device_id, password or None)], each checked; BrokerDirError for the first bad one."""
    checked, sites = [], {}
    for site, device_id, password in devices:
        try:
            acl.check_name(device_id, "device_id")
            acl.check_name(site, "site")
        except ValueError as exc:
            raise BrokerDirError(str(exc)) from None
        if password is not None:  # a password the node itself would refuse to log in with
            problem = (acl.node_config().credentials_problem({"user": device_id, "password": password})
                       if type(password) is str else "broker.password is not a string")
            if problem:
                raise BrokerDirError("device %s: %s" % (device_id, problem))
        if sites.setdefault(device_id, site) != site:
            raise BrokerDirError("device %s is listed twice, at sites %s and %s" % (device_id, sites[device_id], site))
        checked.append((site, device_id, password))
    return checked


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BrokerDirError("%s: cannot read it: %s" % (path, getattr(exc, "strerror", None) or exc)) from None


def _write_json(path, data, private=False):
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    (passwd.write_private if private else _write_text)(path, text)


def _write_text(path, text):
    """Atomically, world-readable (0644): for files holding no secret."""
    passwd.write_private(path, text)
    os.chmod(path, 0o644)
