"""`network` for one board: a station WLAN whose link follows the board's simulated access point.

Status codes and behaviour follow the ESP32 port: after connect() the station keeps retrying by
itself (status() stays STAT_CONNECTING) until the access point is reachable; isconnected() means
associated and holding an IP address.
"""

from . import new_module

STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP = 1000, 1001, 1010
STAT_BEACON_TIMEOUT, STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD = 200, 201, 202
STAT_ASSOC_FAIL, STAT_HANDSHAKE_TIMEOUT = 203, 204
STA_IF, AP_IF = 0, 1


def module(board):
    ap = board.ap
    clock = board.clock

    class WLAN:
        IF_STA, IF_AP = STA_IF, AP_IF
        PM_NONE, PM_PERFORMANCE, PM_POWERSAVE = 0, 1, 2

        def __init__(self, interface=STA_IF):
            self._if = interface
            self._st = board.wlan  # station state lives on the board: it outlives a soft reset's objects

        def active(self, is_active=None):
            if is_active is None:
                return self._st["active"]
            self._st["active"] = bool(is_active)
            if not is_active:
                self._st.update(target=None, status=STAT_IDLE)

        def connect(self, ssid=None, key=None, *, bssid=None):
            board.checkpoint()
            if not self._st["active"]:
                raise OSError("Wifi Not Started")
            self._st.update(target=(ssid, key), since=clock.now(), status=STAT_CONNECTING)

        def disconnect(self):
            self._st.update(target=None, status=STAT_IDLE)

        def _update(self):
            board.checkpoint()
            st = self._st
            if st["target"] is None:
                return
            ssid, key = st["target"]
            if st["status"] == STAT_GOT_IP and not ap.up:
                st.update(status=STAT_CONNECTING, since=clock.now())  # link lost: the driver retries
            elif st["status"] != STAT_GOT_IP:
                if not ap.up or ssid != ap.ssid:
                    st["since"] = clock.now()
                elif (key or "") != ap.password:
                    st["status"] = STAT_WRONG_PASSWORD
                elif clock.now() - st["since"] >= ap.connect_s:
                    st["status"] = STAT_GOT_IP
                    board.wifi_connects += 1

        def isconnected(self):
            self._update()
            return self._st["status"] == STAT_GOT_IP

        def status(self, param=None):
            self._update()
            if param is None:
                return self._st["status"]
            if param == "rssi":
                if self._st["status"] != STAT_GOT_IP:
                    raise OSError("STA is not connected")
                return ap.rssi
            raise ValueError("unknown status param")

        def _addr(self):
            return board.ip if self.isconnected() else "0.0.0.0"

        def ifconfig(self, config=None):
            return (self._addr(), "255.255.255.0", "10.77.0.1", "10.77.0.1")

        def ipconfig(self, name=None, **kwargs):
            if name == "addr4":
                return (self._addr(), "255.255.255.0")
            if name == "dhcp4":
                return True
            raise ValueError("unexpected key")

        def config(self, name=None, **kwargs):
            if name is None:
                self._st["config"].update(kwargs)
                return None
            if name == "mac":
                return bytes(board.mac)
            if name in ("essid", "ssid"):
                return self._st["target"][0] if self._st["target"] else ""
            if name in self._st["config"]:
                return self._st["config"][name]
            raise ValueError("unknown config param")

        def scan(self):
            board.checkpoint()
            if not ap.up:
                return []
            return [(ap.ssid.encode(), b"\x02\x00\x00\x00\x00\x01", 6, ap.rssi, 3, False)]

    return new_module(
        "network", __doc__, WLAN=WLAN, STA_IF=STA_IF, AP_IF=AP_IF, STAT_IDLE=STAT_IDLE,
        STAT_CONNECTING=STAT_CONNECTING, STAT_GOT_IP=STAT_GOT_IP,
        STAT_BEACON_TIMEOUT=STAT_BEACON_TIMEOUT, STAT_NO_AP_FOUND=STAT_NO_AP_FOUND,
        STAT_WRONG_PASSWORD=STAT_WRONG_PASSWORD, STAT_ASSOC_FAIL=STAT_ASSOC_FAIL,
        STAT_CONNECT_FAIL=STAT_ASSOC_FAIL, STAT_HANDSHAKE_TIMEOUT=STAT_HANDSHAKE_TIMEOUT,
        hostname=lambda name=None: board.device_id if name is None else None,
    )
