"""The loss ledger: what the fleet produced against what reached the broker, record by record.

A record is named by (device, boot, seq). The harness tells the ledger what each boot produced
(`produced(device, boot, count)`: records 0..count-1 exist); the ledger hears, as an independent MQTT
subscriber, what was delivered and what the nodes declared dropped (the telemetry "dropped" key, see
docs/contract.md). `account()` then sorts every produced record into exactly one bucket:

- delivered: received at least once (extra copies are `duplicates`, which the contract allows);
- dropped_counted[why]: not received, inside a range the node declared ("full", "reset");
- silently_lost: not received and never declared: the one number that must be zero.

Records received that were never produced are `unexpected` (a harness or node bug). For a boot
still running when the harness took its last count, records numbered past that count are
`after_end`: produced after the count, not judged.

The accounting is a pure function over plain data (`account`), so it is tested without MQTT. The
subscriber is thin: a fixed client id with a persistent session (clean_session=False) and QoS 1,
so against a broker with persistence a broker restart loses nothing on the ledger's side.
`Ledger(access)` with a security.access.BrokerAccess logs in (TLS, user, password); a broker that
uses user names as client ids then keys the session by the user.
"""

import json
import math
import threading
import uuid
from collections import Counter

import paho.mqtt.client as mqtt

from .security.access import BrokerAccess

WHYS = ("full", "reset")  # the contract's reasons; "full" is named first where ranges overlap
MAX_SEQ = 1 << 26  # records in one boot: two years at one a second; more is a broken message
_ZERO = ("produced", "delivered", "duplicates", "silently_lost", "unexpected", "after_end")


class Tally:
    """How many times each seq of one (device, boot) arrived; compact for millions of records.

    A bytearray holds counts up to 255 (one byte per seq); higher counts go to a dict. Reads like
    the {seq: copies} dict account() also accepts: get() and items().
    """

    __slots__ = ("_counts", "_extra")

    def __init__(self):
        self._counts = bytearray()
        self._extra = {}

    def add(self, seq, copies=1):
        if seq < 0:
            raise ValueError("seq %d is negative" % seq)
        if seq >= len(self._counts):
            self._counts.extend(bytes(seq + 1 - len(self._counts) + 64))
        total = self.get(seq) + copies
        self._counts[seq] = min(total, 255)
        if total >= 255:
            self._extra[seq] = total

    def get(self, seq, default=0):
        if 0 <= seq < len(self._counts) and self._counts[seq]:
            count = self._counts[seq]
            return self._extra[seq] if count == 255 else count
        return default

    def items(self):
        counts = self._counts
        for seq in range(len(counts)):
            if counts[seq]:
                yield seq, self.get(seq)

    def beyond(self, count):
        """The seqs at or past count received at least once."""
        counts = self._counts
        return [seq for seq in range(count, len(counts)) if counts[seq]]

    def scan(self, count):
        """(seqs below count never received, extra copies of those received), at C speed."""
        counts = self._counts[:count]
        missing = list(range(len(counts), count))
        at = counts.find(0)
        while at != -1:
            missing.append(at)
            at = counts.find(0, at + 1)
        copies = sum(counts) + sum(n - 255 for seq, n in self._extra.items() if seq < count)
        return sorted(missing), copies - (count - len(missing))


def _scan(received, count):
    """Tally.scan() for a plain {seq: copies} mapping."""
    missing, extra = [], 0
    for seq in range(count):
        copies = received.get(seq, 0)
        if copies:
            extra += copies - 1
        else:
            missing.append(seq)
    return missing, extra


def _row():
    row = dict.fromkeys(_ZERO, 0)
    row["dropped_counted"] = dict.fromkeys(WHYS, 0)
    return row


def _add_row(total, row):
    for key in _ZERO:
        total[key] += row[key]
    for why, n in row["dropped_counted"].items():
        total["dropped_counted"][why] = total["dropped_counted"].get(why, 0) + n


class _Runs:
    """Contiguous runs of seqs, as [{"device", "boot", "seq", "n"}]: the first `keep` of them."""

    def __init__(self, keep):
        self.keep = keep
        self.runs = []
        self._last = None  # the run being extended, kept or not

    def add(self, device, boot, seq):
        last = self._last
        if last and (last["device"], last["boot"], last["seq"] + last["n"]) == (device, boot, seq):
            last["n"] += 1
            return
        self._last = {"device": device, "boot": boot, "seq": seq, "n": 1}
        if len(self.runs) < self.keep:
            self.runs.append(self._last)


def _why(ranges, seq):
    for start, end, why in ranges:
        if start <= seq < end:
            return why
    return None


def account(produced, received, declared, running=None, examples=5):
    """Sort every produced record into delivered / dropped_counted / silently_lost.

    produced: {device: {boot: count}} (records 0..count-1 of that boot exist);
    received: {device: {boot: {seq: copies}}} (or a Tally per boot);
    declared: {device: [(boot, seq, n, why), ...]} (the nodes' drop declarations; n None: seq and
    every later record of that boot);
    running: {device: boot} whose count was taken while it ran (later seqs count as after_end).
    Returns {"totals": row, "devices": {device: row}, "silently_lost_examples": [...],
    "unexpected_examples": [...]} where a row holds produced, delivered, duplicates,
    dropped_counted {why: n}, silently_lost, unexpected, after_end; examples are runs
    {"device", "boot", "seq", "n"}.
    """
    running = running or {}
    lost, odd = _Runs(examples), _Runs(examples)
    totals, rows = _row(), {}
    for device in sorted(set(produced) | set(received) | set(declared)):
        row = rows[device] = _row()
        ranges = {}
        for boot, seq, n, why in declared.get(device, ()):
            ranges.setdefault(boot, []).append((seq, math.inf if n is None else seq + n, why))
        for spans in ranges.values():
            spans.sort(key=lambda s: (WHYS.index(s[2]) if s[2] in WHYS else len(WHYS), s[0]))
        made, got = produced.get(device, {}), received.get(device, {})
        for boot in sorted(set(made) | set(got)):
            count, tally = made.get(boot, 0), got.get(boot) or {}
            spans = ranges.get(boot, ())
            row["produced"] += count
            missing, extra = tally.scan(count) if isinstance(tally, Tally) else _scan(tally, count)
            row["delivered"] += count - len(missing)
            row["duplicates"] += extra
            for seq in missing:
                why = _why(spans, seq)
                if why is None:
                    row["silently_lost"] += 1
                    lost.add(device, boot, seq)
                else:
                    row["dropped_counted"][why] = row["dropped_counted"].get(why, 0) + 1
            past = tally.beyond(count) if isinstance(tally, Tally) else sorted(s for s in tally if s >= count)
            for seq in past:
                if running.get(device) == boot:
                    row["after_end"] += 1
                else:
                    row["unexpected"] += 1
                    odd.add(device, boot, seq)
        _add_row(totals, row)
    return {"totals": totals, "devices": rows, "silently_lost_examples": lost.runs,
            "unexpected_examples": odd.runs}


class Ledger:
    """Subscribes to floorwatch/<site>/+/telemetry and /status and keeps the books.

    `record(topic, payload)` is the whole message handling (the MQTT callback only calls it), so
    tests can feed messages directly. Thread-safe: the harness calls produced() from board threads.
    """

    def __init__(self, host, port=None, site="+", client_id=None):
        self.access = BrokerAccess.of(host, port)
        self.host, self.port, self.site = self.access.host, self.access.port, site
        self.client_id = client_id or "floorwatch-ledger-" + uuid.uuid4().hex[:10]
        self._lock = threading.Lock()
        self._produced = {}   # device -> {boot: count}
        self._running = {}    # device -> boot counted while running
        self._received = {}   # device -> {boot: Tally}
        self._declared = {}   # device -> set of (boot, seq, n, why); repeats after a reset are one
        self.status = {}      # device -> Counter of status states
        self.reasons = {}     # device -> Counter of status "reason" values (why a run ended)
        self.messages = 0     # telemetry messages handled
        self.malformed = []   # (topic, why) for telemetry the ledger could not read (first 20)
        self.malformed_count = 0
        self.connects = 0
        self.sessions_lost = 0  # reconnects where the broker had forgotten our session: a gap
        self.client = None

    # --- the books ---------------------------------------------------------------------------
    def produced(self, device, boot, count, running=False):
        """Ground truth from the harness: boot `boot` of `device` created records 0..count-1."""
        with self._lock:
            boots = self._produced.setdefault(device, {})
            boots[boot] = max(boots.get(boot, 0), count)
            if running:
                self._running[device] = boot
            elif self._running.get(device) == boot:
                del self._running[device]

    def record(self, topic, payload):
        """Handle one message from floorwatch/<site>/<device>/<kind>."""
        parts = topic.split("/")
        if len(parts) != 4:
            return
        device, kind = parts[2], parts[3]
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if kind == "status":
            if isinstance(body, dict):
                with self._lock:
                    self.status.setdefault(device, Counter())[str(body.get("state"))] += 1
                    if body.get("state") != "offline":
                        reason = body.get("reason")
                        reason = reason if isinstance(reason, str) else "null"  # null: nothing recorded
                        self.reasons.setdefault(device, Counter())[reason] += 1
            return
        if kind != "telemetry":
            return
        parsed = _telemetry(body)
        with self._lock:
            if isinstance(parsed, str):
                self.malformed_count += 1
                if len(self.malformed) < 20:
                    self.malformed.append((topic, parsed))
                return
            boot, seq, n, dropped = parsed
            tally = self._received.setdefault(device, {}).get(boot)
            if tally is None:
                tally = self._received[device][boot] = Tally()
            for i in range(n):
                tally.add(seq + i)
            self._declared.setdefault(device, set()).update(dropped)
            self.messages += 1

    def report(self, examples=5):
        with self._lock:
            result = account(self._produced, self._received, self._declared, self._running, examples)
            for device, row in result["devices"].items():  # what the nodes said of themselves
                row["states"] = dict(self.status.get(device, {}))
                row["reasons"] = dict(self.reasons.get(device, {}))
            result["messages"] = self.messages
            result["malformed"] = self.malformed_count
            result["malformed_examples"] = ["%s: %s" % m for m in self.malformed[:examples]]
            result["sessions_lost"] = self.sessions_lost
            return result

    # --- MQTT ----------------------------------------------------------------------------------
    def start(self, timeout=10):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=1)  # back soon after a restart
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda client, userdata, msg: self.record(msg.topic, msg.payload)
        self.access.connect(self.client, keepalive=30, timeout=timeout)
        return self

    def stop(self, forget=True):
        """Disconnect; with forget, also end the persistent session so the broker stops queueing."""
        if self.client is None:
            return
        self.client.disconnect()
        self.client.loop_stop()
        self.client = None
        if forget:
            try:
                eraser = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                     clean_session=True, protocol=mqtt.MQTTv311)
                self.access.configure(eraser)
                eraser.connect(self.host, self.port, keepalive=10)
                eraser.loop(timeout=1)
                eraser.disconnect()
            except OSError:
                pass  # the broker is gone: so is the session, or it does not matter

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        with self._lock:
            if self.connects and not flags.session_present:
                self.sessions_lost += 1  # the broker restarted without our session: messages lost
            self.connects += 1
        for kind in ("telemetry", "status"):
            client.subscribe("floorwatch/%s/+/%s" % (self.site, kind), qos=1)


def _telemetry(body):
    """(boot, seq, n, declarations) from a telemetry message, or a one-line reason it is unreadable."""
    if not isinstance(body, dict):
        return "not a JSON object"
    boot, seq, records = body.get("boot"), body.get("seq"), body.get("r")
    if type(boot) is not int or type(seq) is not int or seq < 0:
        return "boot and seq must be integers, seq >= 0"
    if not isinstance(records, list) or not records:
        return "r must be a non-empty list"
    if seq + len(records) > MAX_SEQ:
        return "seq %d is beyond any boot's records" % seq
    dropped = []
    for item in body.get("dropped") or ():
        fields = [item.get(k) for k in ("boot", "seq", "n")] if isinstance(item, dict) else []
        if (len(fields) != 3 or any(type(v) is not int for v in fields[:2]) or not isinstance(item.get("why"), str)
                or not (fields[2] is None or type(fields[2]) is int)):
            return "dropped entries need integer boot and seq, an integer or null n, and a string why"
        dropped.append((fields[0], fields[1], fields[2], item["why"]))
    return boot, seq, len(records), dropped
