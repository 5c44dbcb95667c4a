"""Condition monitoring: turns readings into metrics, baselines, trends and alarm events.

Hardware-free, so the judgements a node makes run unchanged in the tests, on CPython and in the
MicroPython VM. The main loop hands over each temperature reading and each analysed vibration
window; the monitor keeps the learned baselines (persisted by the caller), the temperature trends
and the alarm state machines, and queues alarm events in `events` as (metric, event, value).

Metrics (docs/contract.md): a temperature sensor NAME (degC), NAME.rate (degC/min), NAME.rise (K
above its baseline) and NAME.early (the seconds predicted to be left, at the next reading, until NAME
reaches its alarm limit: a low limit that warns `early_s` ahead); an accelerometer's NAME.rms, .pk, .cf, .kurt and .vel, each the largest of
the three axes.
"""

from node import alarms, baseline, trend, vibration

_NOT_LEARNED = (".rise", ".early")  # relative to a baseline already, or a prediction
_EARLY_CLEAR = 1.5  # an early warning clears once the prediction is back above 1.5 x the horizon
_FAR = 1e9  # seconds: "not approaching the limit" for the early-warning limit
_VIB_KEYS = ("rms", "pk", "vel", "cf", "kurt")


def _largest(xyz):
    return max(xyz[0], xyz[1], xyz[2])


class Monitor:
    def __init__(self, cfg, stored_baseline=None):
        thresholds = {}
        self.horizon = {}  # temperature sensor -> (its absolute limit, early_s)
        for metric in cfg["thresholds"]:
            t = cfg["thresholds"][metric]
            thresholds[metric] = t
            if t.get("early_s"):
                limit = t["alarm"] if t["alarm"] is not None else t["warn"]
                self.horizon[metric] = (limit, t["early_s"])
                thresholds[metric + ".early"] = {
                    "warn": t["early_s"], "deadband": t["early_s"] * (_EARLY_CLEAR - 1), "low": True}
        self.alarms = alarms.Alarms(thresholds)
        self.baseline = baseline.Baseline(cfg["baseline"]["samples"], stored_baseline)
        self.baseline_changed = False  # the caller saves the baseline when this is set
        window_s = cfg["trend"]["window_s"]
        self.trends = {}
        self.last = {}  # temperature sensor -> when its last reading came (ms)
        self.learned = {}  # sensor -> the metrics whose baselines are learned
        for s in cfg["sensors"]:
            name = s["name"]
            if s["type"] in ("ds18b20", "mcu_temp"):
                self.trends[name] = trend.Trend(window_s)
                self.learned[name] = [name, name + ".rate"]
            else:
                self.learned[name] = [name + "." + key for key in _VIB_KEYS]
        machine = cfg["machine"]
        self.zones = vibration.zone_limits(machine["group"], machine["foundation"])
        self.events = []
        for metric in self.alarms.limits:
            base = self.baseline.value(metric)
            if base is not None:
                self.alarms.set_baseline(metric, base)

    def _observe(self, metric, value, now):
        """Check metric against its limits; learn its baseline. Returns the baseline (or None)."""
        event = self.alarms.check(metric, value, now)
        if event is not None:
            self.events.append((metric, event, value))
        if value is None or metric.endswith(_NOT_LEARNED[0]) or metric.endswith(_NOT_LEARNED[1]):
            return None
        if self.baseline.add(metric, value):
            self.baseline_changed = True
            self.alarms.set_baseline(metric, self.baseline.value(metric))
        return self.baseline.value(metric)

    def temperature(self, name, value, now):
        """One reading (None when it failed) at now (ms): returns (rate, rise, eta), None if unknown."""
        base = self._observe(name, value, now)
        if value is None:
            return None, None, None
        tr = self.trends[name]
        tr.add(now, value)
        rate = tr.rate()
        self._observe(name + ".rate", rate, now)
        rise = None if base is None else value - base
        self._observe(name + ".rise", rise, now)
        eta = None
        if name in self.horizon:
            eta = tr.eta_s(value, self.horizon[name][0])
            # Judged on the time that will be left at the next reading (one interval on), so
            # the warning comes at least early_s before the crossing, not up to an interval after.
            left = _FAR
            if eta is not None:
                left = eta - (now - self.last[name]) / 1000 if name in self.last else eta
                left = left if left > 0 else 0
            self._observe(name + ".early", left, now)
        self.last[name] = now
        return rate, rise, eta

    def vibration(self, name, window, now):
        """One analysed window (a vibration.Analyzer): returns (zone, rel); rel is None until the
        baselines of velocity, crest factor and kurtosis are learned, else their ratios to them."""
        rel = []
        for key in _VIB_KEYS:
            value = _largest(getattr(window, key))
            base = self._observe(name + "." + key, value, now)
            if key in ("vel", "cf", "kurt"):
                rel.append(value / base if base else None)
        zone = vibration.zone(_largest(window.vel), self.zones)
        return zone, (None if None in rel else rel)

    def ack(self, metric, now):
        """Acknowledge one metric's alarm (or all with None); returns the metrics acknowledged.

        Raises ValueError for a metric that has no limits.
        """
        if metric is not None and metric not in self.alarms.limits:
            raise ValueError("no alarm limits for %s" % repr(metric))
        acked = []
        for m, event in self.alarms.ack(metric, now):
            self.events.append((m, event, None))
            acked.append(m)
        return acked

    def rebaseline(self, sensor=None):
        """Learn the baselines of one sensor's metrics (or every one) again; returns their names.

        The old baselines keep relative limits working until the new ones are learned.
        """
        if sensor is not None and sensor not in self.learned:
            raise ValueError("no sensor %s" % repr(sensor))
        names = []
        for name in self.learned:
            if sensor is None or name == sensor:
                names.extend(self.learned[name])
        self.baseline.restart(names)
        self.baseline_changed = True
        names.sort()
        return names
