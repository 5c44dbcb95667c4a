"""WiFi and MQTT for the node, around the vendored umqtt.simple, and what the link promises.

umqtt.simple is a bare client: it sends no keepalive pings, never reconnects, and its socket can
block forever. This module adds what the node needs without editing it. The main loop calls
service() often (at least every keepalive/4; wait() never idles longer than that while connected),
publish() to send, and wait(ms) to idle.

Promises (K = the broker's keepalive_s, at least 5 s; T = _IO_TIMEOUT_MS = 5 s):
- No call blocks indefinitely on the network. Every socket operation (TCP connect, CONNACK, SUBACK,
  PUBACK, PINGRESP, each read and write) gives up when no byte moves for T; the connection is then
  closed. A connect attempt takes at most about 3 T (TCP connect, CONNACK, SUBACK; with TLS, each
  handshake read gets its own T) plus the DNS lookup, which no socket timeout covers (the ESP32's
  resolver has its own timeout of a few seconds). A watchdog deadline for the link must allow that.
- A broker that stops answering while TCP stays up (half-open: a hung broker, a NAT that forgot
  the connection) is given up within K/4 + T of its last answer: the link sends PINGREQ when it
  has sent nothing for K/4 and waits at most T for PINGRESP; a publish waits at most T for its
  PUBACK. As a backstop, a connection from which nothing at all arrived for 1.5 K is dropped.
- A connection the broker closes (restart, RST) is noticed at the next service(); wait() returns
  early when the socket becomes readable, which includes end of stream.
- Reconnects never stop. Waits after failures double from 0.5-1 s to 30-60 s, with random jitter
  (node.backoff) so a fleet does not return in one wave; a successful connect resets them. With a
  backup broker, each failed attempt switches to the other broker; after a connection is lost,
  the broker that last worked is tried first. Both brokers get the same Last Will.
- WiFi: the ESP32 driver retries by itself; when the station has not been associated for 20 s,
  the link re-joins (disconnect + connect), then again after 20 s plus a growing pause (1-2 s,
  doubling up to 60-120 s), in case the driver got stuck. The MQTT connection is closed at once
  when association is lost. For 5 s after each join, an idle loop looks for the association every
  250 ms, so the broker connection follows it within about 0.25 s; a disconnected idle never
  sleeps past the next broker attempt.
- publish() returns True only after the broker's PUBACK (QoS 1). False means the message may or
  may not have reached the broker: the caller keeps it and sends it again later (duplicates are
  possible and identifiable by the payload's (boot, seq); loss is not).
- Commands on the cmd topic (subscribed at QoS 1 after every connect) land in `inbox`, at most
  _INBOX_MAX waiting; beyond that they are dropped and counted in dropped_commands. The callback
  never publishes (it can run inside a publish). Sessions are clean: a command sent while the node
  was offline is not delivered unless it was retained.
- A command too large to be one (a read of more than _READ_MAX bytes: commands.MAX_COMMAND plus room
  for the topic) is never allocated: its bytes are read and thrown away in small pieces, the
  stream stays in step (the QoS 1 PUBACK still goes out), and `inbox` gets its size, an int, in
  its place (commands.parse_command turns that into an error ack).
- Credentials: a broker entry with a credentials problem (config.credentials_problem: no user, no
  password, a placeholder, too short) or with tls but no CA is never connected to. The reason is
  printed once per boot per broker, naming host and port, never the password. With no usable
  broker the link only keeps WiFi up and idles for the whole wait() asked; the caller keeps
  sampling and queueing.
- TLS (broker "tls": true): the broker's certificate must chain to the entry's "ca" (the first
  certificate of the PEM, given to ssl as DER) and name the host the link connects to
  (server_hostname: SNI and the hostname check). A failed check is a failed connect attempt
  (printed, then the usual backoff). The ESP32 port also checks the certificates' dates against
  the RTC, so TLS needs the clock set first (NTP): an unset RTC (2000-01-01) fails with "The
  certificate validity starts in the future". On MicroPython >= 1.23 `ussl` is gone; the link
  makes umqtt.simple's `import ussl` find `ssl`.
- Not promised here: delivery across a reset or power loss (node.store keeps records on flash).

umqtt.simple details this module works around (see _Stream and _TimedSockets):
- it creates its socket inside connect(), without a timeout: a broker that accepts TCP but never
  sends CONNACK would hang it forever;
- wait_msg() switches the socket to blocking-forever after the first byte of every packet, so
  the rest of that packet, and the next packet publish() or subscribe() waits for, have no timeout;
- wait_msg() returns None for a PINGRESP and also after handling an incoming PUBLISH; for any
  other packet it returns the op code without reading the packet's body (the stream is then out
  of step, so an unexpected op code drops the connection).
"""

import errno
import network
import random
import select
import socket
import sys
import time
from micropython import const
from umqtt import simple
from umqtt.simple import MQTTClient

from node import config
from node.backoff import Backoff
from node.commands import MAX_COMMAND

_IO_TIMEOUT_MS = const(5000)
_READ_MAX = MAX_COMMAND + 256  # the largest read _Stream allocates: a command and its topic
_DISCARD_CHUNK = const(64)
_WIFI_GRACE_MS = const(20000)
_ASSOC_WATCH_MS = const(5000)  # after a join, look this long for the association (usually 1-3 s) ...
_ASSOC_POLL_MS = const(250)  # ... this often, so the broker connection follows it promptly
_INBOX_MAX = const(8)


def _rand(n):
    return random.getrandbits(30) % n


class _TimedSockets:
    """Stands in for the socket module inside umqtt.simple, whose connect() makes its own socket:
    these start with the I/O timeout, so TCP connect, the TLS handshake and the wait for CONNACK
    are bounded. `last` is the TCP socket under a TLS one, which has no settimeout() of its own."""

    def __init__(self):
        self.getaddrinfo = socket.getaddrinfo
        self.last = None

    def socket(self, *args):
        sock = socket.socket(*args)
        sock.settimeout(_IO_TIMEOUT_MS / 1000)
        self.last = sock
        return sock


simple.socket = _TimedSockets()


class _Stream:
    """The broker connection as umqtt.simple sees it once connected.

    "Blocking" means "with the I/O timeout" here, so umqtt's setblocking(True) inside wait_msg()
    cannot take the timeout away. It also notes when bytes last went out and came in, for the
    keepalive ping and the liveness check.
    """

    def __init__(self, sock, tcp):
        self.sock = sock  # what umqtt reads and writes: the TCP socket, or the TLS socket around it
        self.tcp = tcp  # holds the timeout (a MicroPython TLS socket forwards setblocking() to it)
        self.last_in = self.last_out = time.ticks_ms()
        self._junk = None  # the buffer an oversized message is read into, piece by piece
        self.setblocking(True)

    def setblocking(self, flag):
        self.sock.setblocking(flag)
        if flag:
            self.tcp.settimeout(_IO_TIMEOUT_MS / 1000)

    def read(self, n):
        if n > _READ_MAX:
            return self._discard(n)
        data = self.sock.read(n)
        if data:
            self.last_in = time.ticks_ms()
        return data

    def _discard(self, n):
        """Read and drop n bytes without holding them; n stands in for them. Only umqtt's reads of
        a PUBLISH's topic and body can be this large (the socket is timed: wait_msg made it so)."""
        if self._junk is None:
            self._junk = bytearray(_DISCARD_CHUNK)
        left = n
        while left:
            got = self.sock.readinto(self._junk, min(left, _DISCARD_CHUNK))
            if not got:  # end of stream in mid-message: the connection is gone
                raise OSError(errno.ECONNABORTED)
            left -= got
            self.last_in = time.ticks_ms()
        return n

    def write(self, *args):
        count = self.sock.write(*args)
        self.last_out = time.ticks_ms()
        return count

    def close(self):
        self.sock.close()


class Link:
    def __init__(self, device_id, wifi, brokers, will_topic, will_msg, cmd_topic):
        if not 1 <= len(brokers) <= 2:
            raise ValueError("link needs [primary] or [primary, backup] brokers")
        self.wlan = network.WLAN(network.STA_IF)
        self.wifi = wifi
        self.cmd_topic = cmd_topic
        self.clients = []  # one per broker: umqtt.simple fixes host and port at construction
        self.refusals = []  # per broker: None, or why the link will not connect to it
        for i in range(len(brokers)):
            b = brokers[i]
            field = "broker.backup" if i else "broker"
            why, params = _refusal(b, field), {}
            if b["tls"] and why is None:
                try:
                    params = _ssl_params(b)
                except ValueError as exc:  # a CA that config.validate would have refused
                    why = "%s.ca %s" % (field, exc)
            client = MQTTClient(device_id, b["host"], b["port"], b["user"], b["password"], b["keepalive_s"],
                                b["tls"], params)
            client.set_last_will(will_topic, will_msg, True, 1)
            client.set_callback(self._on_message)
            self.clients.append(client)
            self.refusals.append(why)
        self._usable = [i for i in range(len(brokers)) if self.refusals[i] is None]
        self.broker_index = self._usable[0] if self._usable else 0  # in use, or tried next while disconnected
        self.client = self.clients[self.broker_index]
        self.connected = False
        self.inbox = []
        self.dropped_commands = 0
        self.mqtt_reconnects = 0
        self.wifi_reconnects = 0
        self._stream = None
        self._poll = None
        self._got_publish = False  # set by the callback: tells a PINGRESP from a PUBLISH
        self._ever_connected = False
        self._wifi_was_up = False
        self._wifi_ever_up = False
        self._mqtt_backoff = Backoff(1000, 60000, _rand)
        self._wifi_backoff = Backoff(2000, 120000, _rand)
        self._next_try = self._rejoin_at = self._joined_at = time.ticks_ms()

    # --- public ------------------------------------------------------------------------------
    def start(self):
        for i in range(len(self.clients)):
            if self.refusals[i] is not None:  # once per boot: the link never tries this broker
                c = self.clients[i]
                print("mqtt: refusing to connect to %s:%d: %s" % (c.server, c.port, self.refusals[i]))
        self.wlan.active(True)
        self._join()
        self._rejoin_at = time.ticks_add(time.ticks_ms(), _WIFI_GRACE_MS)

    def ip(self):
        return self.wlan.ifconfig()[0]

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError):
            return None

    def service(self):
        """Keep WiFi and MQTT up and collect commands. Returns True just after (re)connecting."""
        if not self._wifi_up():
            self.drop()
            return False
        if not self.connected:
            if not self._usable or time.ticks_diff(time.ticks_ms(), self._next_try) < 0:
                return False
            return self._connect()
        try:
            self._receive()
            stream, keepalive = self._stream, self.client.keepalive * 1000
            now = time.ticks_ms()
            if time.ticks_diff(now, stream.last_in) > keepalive * 3 // 2:
                raise OSError(errno.ETIMEDOUT)  # the broker's pings would have come in long ago
            if time.ticks_diff(now, stream.last_out) >= keepalive // 4:
                self._ping()
        except Exception as exc:  # OSError, or umqtt's IndexError/TypeError/AssertionError on a broken stream
            self._lost("link", exc)
        return False

    def publish(self, topic, msg, retain=False):
        """QoS 1 publish: True once the broker acknowledged it; False (and the link dropped) otherwise."""
        if not self.connected:
            return False
        try:
            self._stream.setblocking(True)
            self.client.publish(topic, msg, retain, 1)
            return True
        except Exception as exc:  # as in service()
            self._lost("publish", exc)
            return False

    def wait(self, ms):
        """Idle up to ms. While connected, return True early when the broker sent something (or
        closed the connection), and never idle past the next keepalive ping."""
        if not self.connected:
            self._wait_offline(ms)
            return False
        due = time.ticks_add(self._stream.last_out, self.client.keepalive * 250)
        ms = max(0, min(ms, time.ticks_diff(due, time.ticks_ms())))
        return bool(self._poll.poll(ms))

    def _wait_offline(self, ms):
        """Idle up to ms while disconnected, but not past the next broker attempt, and, shortly
        after a WiFi join, not long past the association (MicroPython has no event for it)."""
        end = time.ticks_add(time.ticks_ms(), ms)
        if self.wlan.isconnected():
            if self._usable and time.ticks_diff(self._next_try, end) < 0:
                end = self._next_try
        else:
            watch_end = time.ticks_add(self._joined_at, _ASSOC_WATCH_MS)
            while time.ticks_diff(watch_end, time.ticks_ms()) > 0 and time.ticks_diff(end, time.ticks_ms()) > 0:
                time.sleep_ms(min(_ASSOC_POLL_MS, time.ticks_diff(end, time.ticks_ms())))
                if self.wlan.isconnected():
                    return
        time.sleep_ms(max(0, time.ticks_diff(end, time.ticks_ms())))

    def drop(self):
        """Close the MQTT connection without DISCONNECT (so the broker sends the Last Will) and
        schedule the next attempt."""
        if not self.connected:
            return
        self.connected = False
        self._close()
        self._next_try = time.ticks_add(time.ticks_ms(), self._mqtt_backoff.next_ms())

    # --- WiFi --------------------------------------------------------------------------------
    def _join(self):
        self._joined_at = time.ticks_ms()
        try:
            self.wlan.connect(self.wifi["ssid"], self.wifi["password"])
        except OSError as exc:  # e.g. the driver's "Wifi Internal State Error": try again later
            print("wifi connect failed:", repr(exc))

    def _wifi_up(self):
        up = self.wlan.isconnected()
        now = time.ticks_ms()
        if up and not self._wifi_was_up:
            if self._wifi_ever_up:
                self.wifi_reconnects += 1
            self._wifi_ever_up = True
            self._wifi_backoff.reset()
        elif not up and self._wifi_was_up:  # just lost: the driver gets its own time to re-associate
            self._rejoin_at = time.ticks_add(now, _WIFI_GRACE_MS)
        elif not up and time.ticks_diff(now, self._rejoin_at) >= 0:
            print("wifi: not associated, re-joining")
            self.wlan.disconnect()
            self._join()
            self._rejoin_at = time.ticks_add(now, _WIFI_GRACE_MS + self._wifi_backoff.next_ms())
        self._wifi_was_up = up
        return up

    # --- MQTT --------------------------------------------------------------------------------
    def _connect(self):
        client = self.clients[self.broker_index]
        self.client = client
        try:
            client.connect()  # its socket comes from _TimedSockets: connect and CONNACK are bounded
            self._stream = _Stream(client.sock, simple.socket.last)
            client.sock = self._stream
            client.subscribe(self.cmd_topic, 1)
        except Exception as exc:  # OSError, MQTTException (refused), or umqtt's asserts
            print("mqtt connect to %s:%d failed: %r" % (client.server, client.port, exc))
            self._close()
            self._next_try = time.ticks_add(time.ticks_ms(), self._mqtt_backoff.next_ms())
            if len(self._usable) > 1:
                self.broker_index = 1 - self.broker_index
            return False
        self._poll = select.poll()
        self._poll.register(self._stream.sock, select.POLLIN)
        if self._ever_connected:
            self.mqtt_reconnects += 1
        self._ever_connected = True
        self.connected = True
        self._mqtt_backoff.reset()
        return True

    def _receive(self):
        """Handle every packet already waiting (commands go to the inbox)."""
        while True:
            self._got_publish = False
            self._expect_none(self.client.check_msg())  # leaves the socket "blocking", i.e. timed
            if not self._got_publish:
                return

    def _ping(self):
        """PINGREQ, then wait for the PINGRESP (commands arriving meanwhile are handled)."""
        self._stream.setblocking(True)
        self.client.ping()
        deadline = time.ticks_add(time.ticks_ms(), _IO_TIMEOUT_MS)
        while True:
            self._got_publish = False
            self._expect_none(self.client.wait_msg())  # ETIMEDOUT when nothing comes within T
            if not self._got_publish:
                return  # that was the PINGRESP
            if time.ticks_diff(time.ticks_ms(), deadline) >= 0:
                raise OSError(errno.ETIMEDOUT)

    @staticmethod
    def _expect_none(op):
        if op is not None:  # umqtt left this packet's body unread: the stream is out of step
            raise ValueError("unexpected MQTT packet 0x%02x" % op)

    def _lost(self, what, exc):
        print("mqtt %s lost: %r" % (what, exc))
        self.drop()

    def _close(self):
        self._poll = None
        self._stream = None
        try:
            self.client.sock.close()
        except Exception:  # already closed, or never opened (sock is None)
            pass

    def _on_message(self, topic, msg):
        self._got_publish = True
        if len(self.inbox) < _INBOX_MAX:
            self.inbox.append(msg)
        else:
            self.dropped_commands += 1


def _refusal(broker, field):
    """Why the link will not connect to this broker entry, or None."""
    why = config.credentials_problem(broker, field)
    if why is None and broker["tls"] and not broker.get("ca"):
        why = field + ".ca is not set: the broker's certificate could not be checked"
    return why


def _ssl_params(broker):
    """umqtt.simple's ssl_params for ssl.wrap_socket: the broker's certificate must chain to the
    entry's CA and name the host (server_hostname is also the SNI)."""
    import ssl
    sys.modules["ussl"] = ssl  # umqtt.simple 1.3.4 imports ussl, which MicroPython 1.23 dropped
    return {"server_hostname": broker["host"], "cert_reqs": ssl.CERT_REQUIRED,
            "cadata": config.ca_der(broker["ca"])}
