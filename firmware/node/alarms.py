"""Threshold levels with deadband: turns readings into raise/clear events.

High limits only (docs/contract.md): a level is entered when value >= limit
and left when value < limit - deadband, so a reading that wobbles around a
limit gives one event, not a stream of them.
"""
from micropython import const

OK = const(0)
WARNING = const(1)
ALARM = const(2)
LEVELS = ("ok", "warning", "alarm")


class Limit:
    """One metric's warn/alarm limits (either may be None) and current level."""

    def __init__(self, warn, alarm, deadband=0):
        self.warn = warn
        self.alarm = alarm
        self.deadband = deadband
        self.level = OK

    def _target(self, v):
        lvl = self.level
        db = self.deadband
        if self.alarm is not None:
            if v >= self.alarm or (lvl == ALARM and v >= self.alarm - db):
                return ALARM
        if self.warn is not None:
            if v >= self.warn or (lvl >= WARNING and v >= self.warn - db):
                return WARNING
        return OK

    def update(self, value):
        """None, or (level, prev, limit) when the level changed.

        limit is the limit crossed: on a raise the highest one reached, on a
        clear the lowest one whose deadband the value fell back through.
        A None (failed read) or NaN value changes nothing.
        """
        if value is None or value != value:
            return None
        prev = self.level
        new = self._target(value)
        if new == prev:
            return None
        self.level = new
        if new > prev:
            limit = self.alarm if new == ALARM else self.warn
        elif new == OK and self.warn is not None:
            limit = self.warn
        else:
            limit = self.alarm
        return (new, prev, limit)


class Alarms:
    """Limits for every metric in the validated config's thresholds."""

    def __init__(self, thresholds):
        self.limits = {}
        for m in thresholds:
            t = thresholds[m]
            self.limits[m] = Limit(t.get("warn"), t.get("alarm"), t.get("deadband", 0))

    def check(self, metric, value):
        """Limit.update for metric; None for a metric without limits."""
        lim = self.limits.get(metric)
        return None if lim is None else lim.update(value)

    def level(self, metric):
        lim = self.limits.get(metric)
        return OK if lim is None else lim.level

    def active(self):
        """{metric: level name} for every metric above ok."""
        out = {}
        for m in self.limits:
            lvl = self.limits[m].level
            if lvl:
                out[m] = LEVELS[lvl]
        return out
