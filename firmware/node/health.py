"""Sensor self-diagnostics and the node's overall health (docs/contract.md, diag).

Each sensor keeps counters and flags; overall() turns them into
ok / degraded / fault plus the reasons in words.
"""
from micropython import const

HEAP_LOW = const(16384)

# Readings in a row with one value before a sensor counts as stuck; 0 = never.
# A DS18B20 resolves 0.0625 C, so a steady machine can legitimately repeat a
# value for minutes; the ESP32's own sensor reports whole degrees and sits
# still for hours; an accelerometer window (the caller passes e.g. its RMS
# triple, or 0 for an all-zero window) practically never repeats.
STUCK_AFTER = {"ds18b20": 60, "mcu_temp": 0, "adxl345": 3, "mpu6050": 3}
_STUCK_DEFAULT = const(30)


class SensorHealth:
    """Counters for one configured sensor; kind is its config type."""

    def __init__(self, name, kind, stuck_after=None):
        self.name = name
        self.kind = kind
        if stuck_after is None:
            stuck_after = STUCK_AFTER.get(kind, _STUCK_DEFAULT)
        self.stuck_after = stuck_after
        self.present = False
        self.reads = 0
        self.errors = 0
        self.stuck = False
        self.failing = False  # the last read failed
        self.last_error = None
        self._last = None
        self._same = 0

    def ok(self, value):
        """A successful read of value (a number, or a tuple/list for a triple)."""
        self.reads += 1
        self.present = True
        self.failing = False
        if type(value) is list:
            value = tuple(value)  # the caller reuses its list: keep a snapshot
        if self._same and value == self._last:
            self._same += 1
        else:
            self._last = value
            self._same = 1
        self.stuck = self.stuck_after > 0 and self._same >= self.stuck_after

    def fail(self, reason, present=None):
        """A failed read; present=False when the device did not answer at all."""
        self.errors += 1
        self.failing = True
        self.last_error = reason
        if present is not None:
            self.present = present

    def tried(self):
        return self.reads + self.errors > 0

    def delivering(self):
        return self.present and not self.failing

    def problem(self):
        """None, or one line about what is wrong (nothing before the first read)."""
        if not self.tried():
            return None
        if not self.present:
            return self.name + ": not present"
        if self.failing:
            return "%s: read failed (%s)" % (self.name, self.last_error)
        if self.stuck:
            return "%s: stuck (same value %d times)" % (self.name, self._same)
        return None

    def as_dict(self):
        """The per-sensor object of the diag payload."""
        return {"type": self.kind, "present": self.present, "reads": self.reads,
                "errors": self.errors, "stuck": self.stuck, "last_error": self.last_error}


def overall(sensors, heap_free, config_error):
    """(health, problems): 'fault', 'degraded' or 'ok' and the reasons.

    fault: a config error, or sensors configured, all tried and none
    delivering. degraded: any sensor problem, or heap_free below 16 KB.
    Sensors not yet read count neither way; no sensors at all is ok.
    sensors is a list of SensorHealth or a dict of them.
    """
    if type(sensors) is dict:
        sensors = list(sensors.values())
    problems = []
    fault = False
    if config_error:
        problems.append("config error: " + config_error)
        fault = True
    tried = 0
    delivering = 0
    for s in sensors:
        if s.tried():
            tried += 1
        if s.delivering():
            delivering += 1
    if sensors and tried == len(sensors) and not delivering:
        problems.append("no sensor delivering")
        fault = True
    for s in sensors:
        p = s.problem()
        if p:
            problems.append(p)
    if heap_free is not None and heap_free < HEAP_LOW:
        problems.append("heap low: %d bytes free" % heap_free)
    if fault:
        return "fault", problems
    return ("degraded" if problems else "ok"), problems
