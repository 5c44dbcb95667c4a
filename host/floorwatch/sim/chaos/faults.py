"""The chaos campaign's fault classes and its plan: which fault hits which board at what board time.

Pure: `plan()` is a function of (seed, boards, duration, classes, intensity) only, so a campaign
can be replayed from its seed. Each board draws each fault class from its own random stream, so a
board's faults do not change when the fleet grows; every requested class occurs at least once.
"""

import math
import random
from collections import Counter, namedtuple

DAY = 86400.0

# Fault class -> (scope, events per board (or per fleet) per simulated day, durations in board
# seconds: (shortest, longest), drawn log-uniform so that short and long ones both occur, or None
# for a one-shot fault).
FAULTS = {
    "wifi": ("board", 3.0, (2.0, 4 * 3600.0)),           # the access point disappears
    "unreachable": ("board", 1.0, (5.0, 1800.0)),         # the broker cannot be reached from this board
    "outage": ("fleet", 1.0, (5.0, 1800.0)),              # ... nor from any board
    "broker_restart": ("fleet", 2.0, None),               # a real mosquitto restart
    "sensor": ("board", 2.0, (5.0, 3600.0)),              # a sensor unplugged, then plugged back
    "i2c": ("board", 4.0, (1.0, 600.0)),                  # I2C errors on one device, then healed
    "power": ("board", 2.0, (1.0, 1800.0)),               # power lost at a random point; off for a while
    "brownout": ("board", 1.0, None),
    "watchdog": ("board", 1.0, None),                     # the firmware hangs: the watchdog bites
    "clock": ("board", 1.0, None),                        # the RTC wall clock jumps
    "flash_full": ("board", 1.0, (60.0, 4 * 3600.0)),
}
CLASSES = tuple(FAULTS)
# Actions that start (or are) a fault; each long fault's start is followed by its end action.
START = {"down", "unplug", "fail", "cut", "full", "restart", "brownout", "hang", "jump"}
_ACTIONS = {"wifi": ("down", "up"), "unreachable": ("down", "up"), "outage": ("down", "up"),
            "sensor": ("unplug", "replug"), "i2c": ("fail", "heal"), "power": ("cut", "on"),
            "flash_full": ("full", "clear"), "broker_restart": ("restart",), "brownout": ("brownout",),
            "watchdog": ("hang",), "clock": ("jump",)}
I2C_ERRORS = ("ENODEV", "ETIMEDOUT")
HANG_S = (90.0, 600.0)             # longer than the node's 60 s watchdog
JUMP_S = (1.0, 2 * DAY)            # clock jumps: a second to two days, either way
CUT_CHECKPOINTS = (1, 400)         # the power cut lands at one of the next n firmware operations


class Event(namedtuple("Event", "t board fault action arg")):
    """At board time t (s), do `action` of fault class `fault` to board index `board` (None: all).

    arg: wifi/unreachable/outage/flash_full: None; sensor: device pick (an int the runner maps onto
    the board's devices); i2c fail: (device pick, errno name, error count), heal: device pick;
    power cut: checkpoints until the cut; watchdog hang: seconds; clock jump: seconds (+/-). An
    i2c error count of None means until healed.
    """


def _log_uniform(rng, lo, hi):
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _args(fault, rng):
    """(start arg, end arg) for one event of `fault`."""
    if fault == "sensor":
        pick = rng.randrange(1 << 16)
        return pick, pick
    if fault == "i2c":
        pick = rng.randrange(1 << 16)
        count = None if rng.random() < 0.5 else rng.randint(1, 1000)  # None: until healed
        return (pick, rng.choice(I2C_ERRORS), count), pick
    if fault == "power":
        return rng.randint(*CUT_CHECKPOINTS), None
    if fault == "watchdog":
        return round(rng.uniform(*HANG_S), 1), None
    if fault == "clock":
        return round(rng.choice((-1, 1)) * _log_uniform(rng, *JUMP_S), 1), None
    return None, None


def _stream(rng, fault, target, duration, per_day):
    """One target's events of one class: a Poisson process whose faults never overlap."""
    _scope, _rate, span = FAULTS[fault]
    actions = _ACTIONS[fault]
    events, t = [], 0.0
    while True:
        t += rng.expovariate(per_day / DAY)
        if events:  # strictly after the last one ended, also once times are rounded to the ms
            t = max(t, events[-1].t + 0.001)
        if t >= duration:
            return events
        events.extend(_one(rng, fault, target, t, duration, span, actions))
        t = events[-1].t


def _one(rng, fault, target, t, duration, span, actions):
    start_arg, end_arg = _args(fault, rng)
    first = Event(round(t, 3), target, fault, actions[0], start_arg)
    if span is None:
        return [first]
    end = min(t + _log_uniform(rng, *span), duration)
    return [first, Event(round(max(end, first.t), 3), target, fault, actions[1], end_arg)]


def plan(seed, boards, duration, classes=CLASSES, intensity=1.0):
    """The campaign's events, sorted by time: a pure function of its arguments.

    intensity scales every rate (2: twice as many faults). A class that drew no event anywhere gets
    one, at a random time in the first 80 % of the run, so that every requested class is exercised.
    """
    unknown = sorted(set(classes) - set(FAULTS))
    if unknown:
        raise ValueError("unknown fault class %s; known: %s" % (", ".join(unknown), ", ".join(CLASSES)))
    if boards < 1 or not duration > 0:
        raise ValueError("a plan needs at least one board and a duration above 0")
    events = []
    for fault in CLASSES:  # fixed order: the result does not depend on how classes was spelled
        if fault not in classes:
            continue
        scope, per_day, span = FAULTS[fault]
        targets = [None] if scope == "fleet" else range(boards)
        drawn = []
        for target in targets:
            rng = random.Random("%d/%s/%s" % (seed, fault, target))
            drawn.extend(_stream(rng, fault, target, duration, per_day * intensity))
        if not drawn:
            rng = random.Random("%d/%s/forced" % (seed, fault))
            target = None if scope == "fleet" else rng.randrange(boards)
            drawn = _one(rng, fault, target, rng.uniform(0, 0.8 * duration), duration, span, _ACTIONS[fault])
        events.extend(drawn)
    return sorted(events, key=lambda e: (e.t, -1 if e.board is None else e.board, e.fault))  # stable


def fault_counts(events):
    """{class: number of faults} (start actions) in a list of events."""
    return dict(Counter(e.fault for e in events if e.action in START))
