"""Alarm management: turns readings into raise / clear / realarm / ack events.

Each metric has a warning and an alarm limit (either may be None), handled like the limits of
an industrial alarm block (ISA-18.2 practice):

- High limits (the default) are reached at value >= limit; a level that has been announced is
  left only below limit - deadband. Low limits mirror this: reached at value <= limit, left
  above limit + deadband (for a low limit, warn sits above alarm).
- on-delay: a level is raised only once its limit has been reached continuously for on_delay
  (measured against the limit itself, not the deadband, so brief excursions never count).
- off-delay: a level is left only once the value has been back past limit -/+ deadband
  continuously for off_delay; a shorter dip changes nothing.
- The announced level jumps straight to the highest level whose on-delay has run (ok -> alarm
  is one "raise"); going down steps to the highest level still present ("clear" with level
  warning or ok). A raise reports the limit reached; a clear the lowest limit fallen back through.
- latch: while unacknowledged, the level never goes down. After an ack it follows the value
  again, so it clears once the condition is gone (at the next reading, since only readings
  move a level); an ack while the condition persists keeps it raised until the condition
  goes. A raise to a higher level or a realarm needs a new ack.
- realarm: while the level is not ok, the event is announced again ("realarm", unacked) once
  realarm_ms have passed since the last raise, realarm or ack of it.
- relative: warn, alarm and deadband are factors applied to a learned baseline (set_baseline);
  before a positive baseline is set the limit is inactive and never fires.
- A None (failed read) or NaN value changes nothing, timers included.

Times are integer milliseconds since boot (non-wrapping). An event is a tuple
(kind, level, prev, limit): kind "raise", "clear", "realarm" or "ack".
"""
from micropython import const

OK = const(0)
WARNING = const(1)
ALARM = const(2)
LEVELS = ("ok", "warning", "alarm")


class Limit:
    """One metric's limits, delays and alarm state (level, acked)."""

    def __init__(self, warn=None, alarm=None, deadband=0, on_delay_ms=0, off_delay_ms=0,
                 latch=False, realarm_ms=0, low=False, relative=False):
        if warn is not None and alarm is not None and (warn > alarm) != low and warn != alarm:
            raise ValueError("warn %s is %s alarm %s" % (warn, "below" if low else "above", alarm))
        self.warn = warn
        self.alarm = alarm
        self.deadband = deadband
        self.on_delay = on_delay_ms
        self.off_delay = off_delay_ms
        self.latch = latch
        self.realarm = realarm_ms
        self.low = low
        self.relative = relative
        self.level = OK
        self.acked = False
        self._pw = False  # warning / alarm condition present (with the deadband once announced)
        self._pa = False
        self._tw = 0  # when _pw / _pa last changed
        self._ta = 0
        self._tre = 0  # last raise, realarm or ack: the realarm interval counts from here
        self.armed = False
        self._w_on = self._w_off = self._a_on = self._a_off = None
        if not relative:
            self._scale(1)

    def _scale(self, f):
        """Effective limits for factor f: reach (on) and leave (off) points of each level."""
        db = -self.deadband * f if self.low else self.deadband * f
        if self.warn is not None:
            self._w_on = self.warn * f
            self._w_off = self._w_on - db
        if self.alarm is not None:
            self._a_on = self.alarm * f
            self._a_off = self._a_on - db
        self.armed = True

    def set_baseline(self, base):
        """Relative limits only: scale to base; None or base <= 0 disarms (conditions read as gone)."""
        if not self.relative:
            return
        if base is None or not base > 0:
            self.armed = False  # the last effective limits stay, for the events that follow
        else:
            self._scale(base)

    def _past(self, v, x):
        return v <= x if self.low else v >= x

    def limit_of(self, level):
        return self._a_on if level == ALARM else self._w_on

    def update(self, v, now):
        """None, or the event tuple when this reading changes or re-announces the level."""
        if v is None or v != v:
            return None
        lvl = self.level
        pa = pw = False
        if self.armed:
            if self._a_on is not None:
                pa = self._past(v, self._a_off if lvl == ALARM else self._a_on)
            if self._w_on is None:
                pw = pa  # no warning level: its timers follow the alarm's
            else:
                pw = self._past(v, self._w_off if lvl != OK else self._w_on)
        if pa != self._pa:
            self._pa = pa
            self._ta = now
        if pw != self._pw:
            self._pw = pw
            self._tw = now
        if pa and now - self._ta >= self.on_delay:
            up = ALARM
        elif pw and now - self._tw >= self.on_delay and self._w_on is not None:
            up = WARNING
        else:
            up = OK
        new = lvl
        if up > lvl:
            new = up
        elif lvl != OK and (self.acked or not self.latch):
            off = self.off_delay
            if new == ALARM and not pa and now - self._ta >= off:
                new = WARNING
            if new == WARNING and not pw and now - self._tw >= off:
                new = OK
        if new > lvl:
            self.level = new
            self.acked = False
            self._tre = now
            return ("raise", new, lvl, self.limit_of(new))
        if new < lvl:
            self.level = new
            if new == OK and self._w_on is not None:
                return ("clear", new, lvl, self._w_on)
            return ("clear", new, lvl, self._a_on)
        if lvl != OK and self.realarm and now - self._tre >= self.realarm:
            self.acked = False
            self._tre = now
            return ("realarm", lvl, lvl, self.limit_of(lvl))
        return None

    def ack(self, now):
        """The ack event, or None when there is nothing unacknowledged."""
        if self.level == OK or self.acked:
            return None
        self.acked = True
        self._tre = now
        return ("ack", self.level, self.level, self.limit_of(self.level))


def _ms(s):
    return int(s * 1000 + 0.5)


class Alarms:
    """Limits for every metric of the validated config's thresholds."""

    def __init__(self, thresholds):
        self.limits = {}
        for m in thresholds:
            t = thresholds[m]
            self.limits[m] = Limit(t.get("warn"), t.get("alarm"), t.get("deadband", 0),
                                   _ms(t.get("on_delay_s", 0)), _ms(t.get("off_delay_s", 0)),
                                   t.get("latch", False), _ms(t.get("realarm_s", 0)),
                                   t.get("low", False), t.get("relative", False))

    def check(self, metric, value, now_ms):
        """Limit.update for metric; None for a metric without limits."""
        lim = self.limits.get(metric)
        return None if lim is None else lim.update(value, now_ms)

    def ack(self, metric, now_ms):
        """Acknowledge one metric (None: all): [(metric, ack event)] for those that needed it."""
        out = []
        for m in self.limits if metric is None else (metric,):
            lim = self.limits.get(m)
            e = None if lim is None else lim.ack(now_ms)
            if e is not None:
                out.append((m, e))
        return out

    def set_baseline(self, metric, base):
        lim = self.limits.get(metric)
        if lim is not None:
            lim.set_baseline(base)

    def level(self, metric):
        lim = self.limits.get(metric)
        return OK if lim is None else lim.level

    def state(self):
        """{metric: (level, acked)} for every metric above ok."""
        out = {}
        for m in self.limits:
            lim = self.limits[m]
            if lim.level != OK:
                out[m] = (lim.level, lim.acked)
        return out
