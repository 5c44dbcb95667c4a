"""A real mosquitto on a loopback port, for the tests and `floorwatch sim`.

Retained status, the Last Will and reconnects are broker behaviour, so we test against the real
thing rather than a fake. Each Mosquitto() gets its own temp dir (config + log) and port, so
parallel tests never share state; restart() keeps the port so clients can reconnect to it.
pause() freezes the process (SIGSTOP) so its TCP connections stay open but nothing answers: a
half-open broker, as a hung server or a lost NAT mapping looks to a client. `persistent=True`
keeps retained messages and persistent sessions (clean_session=False, with their queued QoS 1
messages) across restart(), in the temp dir.

    with Mosquitto() as broker:
        host, port = broker.host, broker.port      # or broker.url

`secure=BrokerDir(...)` (floorwatch.security.brokerdir) runs that directory's passwords, ACL and
certificates instead of letting anyone in: a TLS listener on `tls_port` (`tls_url`, whose host name
`localhost` the broker certificate names) and a plain one on `port`, both on 127.0.0.1 and both
checking passwords and the ACL. While it runs, its pid is in the directory's mosquitto.pid, so
BrokerDir.reload() reaches it after add_device().
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlsplit

# Debian/Ubuntu put mosquitto in /usr/sbin, which is often not on a normal user's PATH.
SEARCH_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
INSTALL_HINT = "mosquitto not found; install it with: sudo apt-get install mosquitto"
DEFAULT_PORT = 1883


class BrokerError(RuntimeError):
    """mosquitto is missing or would not start; str() is one line."""


def find_mosquitto():
    """Path of the mosquitto binary: PATH first, then SEARCH_PATHS. BrokerError if none."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in SEARCH_PATHS:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise BrokerError(INSTALL_HINT)


def parse_broker_url(url):
    """(host, port) from ``mqtt://HOST[:PORT]`` (port 1883 when left out); ValueError otherwise."""
    bad = ValueError(f"bad broker URL {url!r}: expected mqtt://HOST or mqtt://HOST:PORT")
    if not isinstance(url, str):
        raise bad
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        raise bad from None
    host = parts.hostname
    plain_host = re.fullmatch(r"[A-Za-z0-9._-]+", host or "")
    ipv6_host = parts.netloc.startswith("[") and re.fullmatch(r"[0-9A-Fa-f:.]+", host or "")
    if (parts.scheme != "mqtt" or not (plain_host or ipv6_host) or parts.path or parts.query
            or parts.fragment or "@" in parts.netloc or parts.netloc.endswith(":") or port == 0):
        raise bad
    return host, DEFAULT_PORT if port is None else port


def _free_port(host):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """One mosquitto process on 127.0.0.1; a context manager (start on enter, stop on exit)."""

    host = "127.0.0.1"

    def __init__(self, port=None, start_timeout=10.0, persistent=False, secure=None):
        self.port = port
        self.secure = secure
        self.tls_port = None
        self.start_timeout = start_timeout
        self.persistent = persistent
        self.paused = False
        self._proc = None
        self._dir = None
        self._old_log = ""  # log of earlier temp dirs, so log_text() survives stop()

    @property
    def url(self):
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self):
        return f"mqtts://localhost:{self.tls_port}" if self.secure else None

    @property
    def running(self):
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        """Start mosquitto (on self.port, or on a free port picked now) and wait until it serves."""
        if self.running:
            return self
        binary = find_mosquitto()
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="floorwatch-mosquitto-")
        pick = self.port is None
        attempts = 5 if pick else 3
        for attempt in range(attempts):
            if pick:
                self.port = _free_port(self.host)
            if self.secure and (pick or self.tls_port is None):
                self.tls_port = _free_port(self.host)
            failure = self._launch(binary)
            if failure is None:
                return self
            # Someone may take a port between our probe and mosquitto's bind: try another
            # (a fixed port gets two short retries, e.g. while an old socket lets go).
            if "Address already in use" not in failure or attempt == attempts - 1:
                break
            time.sleep(0.05 if pick else 0.3)
        self.stop()
        raise BrokerError(failure)

    def stop(self):
        """Stop mosquitto and remove its temp dir. Safe to call twice."""
        self._halt()
        if self._dir is not None:
            self._old_log = self.log_text()
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def restart(self):
        """Stop and start again on the same port. Clients are disconnected. Without `persistent`
        the new broker starts empty (retained messages and sessions are lost); with it, mosquitto
        saves them on the way down and loads them again."""
        self._halt()
        return self.start()

    def pause(self):
        """Freeze mosquitto (SIGSTOP): connections stay open, nothing is answered, new TCP
        connections are still accepted by the kernel (they wait in the listen backlog)."""
        if not self.running:
            raise BrokerError("mosquitto is not running: nothing to pause")
        os.kill(self._proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        """Let a paused mosquitto run again (SIGCONT); it answers what waited meanwhile."""
        if self.paused and self.running:
            os.kill(self._proc.pid, signal.SIGCONT)
        self.paused = False

    def log_text(self):
        """Everything mosquitto logged so far, across restarts."""
        if self._dir is None:
            return self._old_log
        try:
            with open(os.path.join(self._dir, "mosquitto.log"), encoding="utf-8",
                      errors="replace") as f:
                return self._old_log + f.read()
        except FileNotFoundError:
            return self._old_log

    # --- internals ---

    def _write_config(self):
        if self.secure:
            return self._write_secure_config()
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
        ]
        if self.persistent:
            # Saved when mosquitto exits (autosave 0), in the temp dir that restart() keeps.
            # No cap on a session's queue: by default mosquitto drops QoS 1 messages past 1000 queued
            # for a subscriber that falls behind, which an observer counting every record must not suffer.
            lines += ["persistence true", "persistence_location " + os.path.join(self._dir, ""),
                      "autosave_interval 0", "max_queued_messages 0"]
        else:
            lines.append("persistence false")
        lines += [
            f"log_dest file {os.path.join(self._dir, 'mosquitto.log')}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
        ]
        return self._save_config("\n".join(lines) + "\n")

    def _write_secure_config(self):
        text = self.secure.conf_text(self.tls_port, self.port, self._dir if self.persistent else None,
                                     os.path.join(self._dir, "mosquitto.log"), tls_address=self.host)
        return self._save_config(text)

    def _save_config(self, text):
        if getattr(os, "geteuid", lambda: -1)() == 0:
            # As root mosquitto switches to user 'mosquitto', which cannot write our log file
            # (nor, in secure mode, read the directory's 0600 password and ACL files).
            text += "user root\n"
        path = os.path.join(self._dir, "mosquitto.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def _launch(self, binary):
        """Run mosquitto once; None when it serves, else a one-line reason."""
        conf = self._write_config()
        before = len(self.log_text())
        out_path = os.path.join(self._dir, "stdout.txt")
        with open(out_path, "ab") as out:
            out_before = out.tell()
            self._proc = subprocess.Popen([binary, "-c", conf], stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while True:
            new_log = self.log_text()[before:]
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                with open(out_path, "rb") as f:
                    f.seek(out_before)
                    tail = _tail(f.read().decode("utf-8", "replace") + new_log)
                return f"mosquitto failed to start on {self.host}:{self.port} (exit {code}): {tail}"
            # The log line proves the listener is ours, not another process on the port.
            if (" running" in new_log and _accepts(self.host, self.port)
                    and (not self.secure or _accepts(self.host, self.tls_port))):
                self._write_pid()
                return None
            if time.monotonic() > deadline:
                self._halt()
                return (f"mosquitto did not start on {self.host}:{self.port} within "
                        f"{self.start_timeout:g} s: {_tail(new_log)}")
            time.sleep(0.02)

    def _pid_path(self):
        return os.path.join(self.secure.path, "mosquitto.pid") if self.secure else None

    def _write_pid(self):
        if self.secure:
            with open(self._pid_path(), "w", encoding="ascii") as f:
                f.write(f"{self._proc.pid}\n")

    def _remove_pid(self, pid):
        try:
            with open(self._pid_path(), encoding="ascii") as f:
                ours = f.read().strip() == str(pid)
            if ours:  # another broker may run on the same directory since
                os.unlink(self._pid_path())
        except OSError:
            pass

    def _halt(self):
        self.resume()  # a stopped process would not act on SIGTERM
        proc, self._proc = self._proc, None
        if proc is not None and self.secure:
            self._remove_pid(proc.pid)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _tail(text, lines=4):
    kept = [line.strip() for line in text.splitlines()
            if line.strip() and "should not be run as root" not in line]
    return " | ".join(kept[-lines:]) or "(no output)"
