"""WiFi and MQTT for the node, around the vendored umqtt.simple.

umqtt.simple is a bare client: it sends no keepalive pings, never reconnects and can block forever.
This module adds what the node needs on top of it, without editing it:
- joins WiFi once; the ESP32 driver then keeps retrying by itself;
- connects to the broker with a Last Will (retained "offline" status) and re-connects after any
  socket error, waiting a little longer after each failure (doubling, capped);
- subscribes to the node's own `cmd` topic and queues incoming commands for the main loop (the
  callback may run inside a publish, so it must not publish itself);
- sends PINGREQ when nothing else went out for half the keepalive, so the broker keeps the session;
- puts a timeout on the socket before each blocking call.
"""

import network
import time
from micropython import const
from umqtt.simple import MQTTClient

_SOCKET_TIMEOUT_S = const(10)
_RETRY_MIN_MS = const(1000)
_RETRY_MAX_MS = const(60000)
_INBOX_MAX = const(8)


class Link:
    def __init__(self, device_id, wifi, broker, will_topic, will_msg, cmd_topic):
        self.wlan = network.WLAN(network.STA_IF)
        self.wifi = wifi
        self.cmd_topic = cmd_topic
        self.client = MQTTClient(
            device_id, broker["host"], broker["port"], broker["user"], broker["password"],
            broker["keepalive_s"], broker["tls"],
            {"server_hostname": broker["host"]} if broker["tls"] else {},
        )
        self.client.set_last_will(will_topic, will_msg, True, 1)
        self.client.set_callback(self._on_message)
        self.keepalive_ms = broker["keepalive_s"] * 1000
        self.connected = False
        self._ever_connected = False
        self.inbox = []
        self.dropped_commands = 0
        self.mqtt_reconnects = 0
        self.wifi_reconnects = 0
        self._wifi_was_up = False
        self._retry_ms = _RETRY_MIN_MS
        self._next_try = time.ticks_ms()
        self._last_out = time.ticks_ms()

    def start(self):
        self.wlan.active(True)
        self.wlan.connect(self.wifi["ssid"], self.wifi["password"])

    def wifi_up(self):
        up = self.wlan.isconnected()
        if up and not self._wifi_was_up and self._ever_connected:
            self.wifi_reconnects += 1
        self._wifi_was_up = up
        return up

    def ip(self):
        return self.wlan.ifconfig()[0]

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError):
            return None

    def service(self):
        """Keep the connection alive and collect commands. Returns True when just connected."""
        if not self.wifi_up():
            self.drop()
            return False
        if not self.connected:
            if time.ticks_diff(time.ticks_ms(), self._next_try) < 0:
                return False
            return self._connect()
        try:
            self._timeout()
            while self.client.check_msg() is not None:
                pass
            if time.ticks_diff(time.ticks_ms(), self._last_out) > self.keepalive_ms // 2:
                self.client.ping()
                self._last_out = time.ticks_ms()
        except (OSError, IndexError, AssertionError):
            self.drop()
        return False

    def publish(self, topic, msg, retain=False):
        """QoS 1 publish; False (and the link dropped) when it did not reach the broker."""
        if not self.connected:
            return False
        try:
            self._timeout()
            self.client.publish(topic, msg, retain, 1)
            self._last_out = time.ticks_ms()
            return True
        except (OSError, IndexError, AssertionError):
            self.drop()
            return False

    def drop(self):
        if not self.connected:
            return
        self.connected = False
        self._close_socket()

    def _close_socket(self):
        try:
            self.client.sock.close()
        except Exception:  # already closed, or never opened (sock is None)
            pass

    def _connect(self):
        try:
            self.client.connect()
            self._timeout()
            self.client.subscribe(self.cmd_topic, 1)
        except Exception as exc:  # umqtt raises OSError, MQTTException or AssertionError
            print("mqtt connect failed:", repr(exc))
            self._close_socket()
            self._next_try = time.ticks_add(time.ticks_ms(), self._retry_ms)
            self._retry_ms = min(self._retry_ms * 2, _RETRY_MAX_MS)
            return False
        if self._ever_connected:
            self.mqtt_reconnects += 1
        self._ever_connected = True
        self.connected = True
        self._retry_ms = _RETRY_MIN_MS
        self._last_out = time.ticks_ms()
        return True

    def _timeout(self):
        self.client.sock.settimeout(_SOCKET_TIMEOUT_S)

    def _on_message(self, topic, msg):
        if len(self.inbox) < _INBOX_MAX:
            self.inbox.append(msg)
        else:
            self.dropped_commands += 1
