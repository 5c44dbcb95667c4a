"""Per-board machine physics: the vibration and temperatures a sensor node would see on a motor.

`Machine(seed, ...)` stands for one motor-driven machine. Everything it returns is a pure function of
the seed, the mode history and the time asked about, so a simulated fleet is reproducible and
the order in which sensors are read does not change the values.

Vibration (g, per axis, +1 g of gravity on z): running-speed harmonics 1x/2x/3x sized to give a
broadband (10-1000 Hz) velocity of about 0.8-1.1 mm/s RMS on the largest axis (x) — ISO 10816-3
zone A for a group 2 machine on a rigid foundation (A <= 1.4 mm/s) — and a little broadband noise.
Temperatures (degC) for "bearing", "winding", "ambient" and "chip": ambient plus load heating through
a first-order lag (time constants of tens of minutes). The faults, each growing from the moment
its mode is set (`set_mode(mode, t)`; a mode given to the constructor has been there forever):
- "imbalance": the 1x component grows as 1 - exp(-t / 45 min) until the largest axis's velocity
  reaches a seeded 3.5-3.9 mm/s: from about 0.9 mm/s (zone A) into zone C (2.8) 45-60 minutes
  after the onset, 3.3-3.6 mm/s after two hours, never zone D (4.5);
- "bearing": short decaying impacts (a 700 Hz structural ring-down of 0.8 ms) at the outer-race
  defect frequency (BPFO, 3.58x running speed), growing as 1 - exp(-t / 10 min). The other
  components shrink so that each axis's mean-square acceleration stays what it was: kurtosis
  (about 12) and crest factor (about 7) rise well above 5 while RMS stays steady, and the velocity
  falls a little (the impacts carry little velocity);
- "overheat": the bearing approaches ambient + 90 K (about 114 C, far above the usual 80/90 C
  limits) with its 25-minute time constant, passing 80 C about 18 minutes and 90 C about 27
  minutes after the onset, whatever the seed; the winding warms to about 110 C (below 125 C, where
  a DS18B20 stops). Temperatures stay continuous across mode changes.
`Machine.for_scenario(seed, mode)` is what the simulated fleet uses: a healthy machine whose fault
starts ONSET_S (10 minutes) after power-on, once the node has learnt its baseline.

Noise comes from one shared table of Gaussian numbers indexed by a hash of the sample instant.
A window is made with numpy (`acceleration_block`: about 0.1 ms for 1,000 samples of three axes),
and fault levels are taken at each sample's own instant, so a sample has one value however the
windows are cut (the register models ask for blocks of samples ahead of the drain).
"""

import bisect
import math
import random

import numpy as _np

MODES = ("normal", "imbalance", "bearing", "overheat")
LOCATIONS = ("bearing", "winding", "ambient", "chip")
ONSET_S = 600.0                 # scenario faults start 10 simulated minutes after power-on

G = 9.80665
TWO_PI = 2.0 * math.pi

_TABLE_BITS = 16
_TABLE_MASK = (1 << _TABLE_BITS) - 1
_rng = random.Random(0x5EED)
_NOISE = [_rng.gauss(0.0, 1.0) for _ in range(1 << _TABLE_BITS)]
_NOISE_NP = _np.array(_NOISE)
_NOISE_SHIFTS = _np.array([[0], [21845], [43690]])  # each axis reads the table a third of the way on
del _rng

# Thermal model per location: (time constant s, normal rise K, overheat rise K, noise degC).
# Normal rises vary by machine (+-15 %); overheat rises do not, so every overheat run crosses the
# limits at about the same time.
_THERMAL = {
    "bearing": (25 * 60.0, 20.0, 90.0, 0.04),
    "winding": (20 * 60.0, 35.0, 85.0, 0.05),
    "chip": (3 * 60.0, 14.0, 14.0, 0.10),
    "ambient": (None, 0.0, 0.0, 0.03),
}
_IMBALANCE_TAU_S = 45 * 60.0
_IMBALANCE_V_MM_S = (3.5, 3.9)  # largest-axis velocity once the imbalance has fully grown
_BEARING_TAU_S = 10 * 60.0
_BEARING_SHARE = 0.6            # share of the y axis's mean square that the impacts take over
_BPFO_ORDER = 3.58
_IMPACT_TAU_S = 0.0008          # decay of the structural ring-down excited by one impact
_IMPACT_SIZE_SD = 0.25          # impact sizes vary by this fraction (Gaussian)
_IMPACT_AXIS = (0.7, 1.0, 0.45)
_IMPACT_AXIS_COL = _np.array(_IMPACT_AXIS)[:, None]
_RING_HZ = 700.0                # resolved at 1600 Hz too; too high to add much velocity


def _mix(a, b):
    """A small integer hash (splitmix-style) mapping (a, b) onto a table index."""
    h = (a * 0x9E3779B97F4A7C15 + b * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 31
    h = (h * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 29
    return h & _TABLE_MASK


def _zero(level):
    """True for a fault level that is 0 throughout (a float, not an array)."""
    return isinstance(level, float) and level == 0.0


def velocity_mm_s(accel_rms_g, freq_hz):
    """RMS velocity (mm/s) of a sinusoid with the given RMS acceleration (v = a / (2 pi f))."""
    return accel_rms_g * G / (TWO_PI * freq_hz) * 1000.0


def peak_g_for_velocity(v_mm_s, freq_hz):
    """Peak acceleration (g) of a sinusoid whose RMS velocity is v_mm_s at freq_hz."""
    return v_mm_s / 1000.0 * TWO_PI * freq_hz / G * math.sqrt(2.0)


class Machine:
    def __init__(self, seed, mode="normal", rpm=1480.0, ambient_c=24.0, clock=None):
        if mode not in MODES:
            raise ValueError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
        self.seed = int(seed)
        self.rpm = float(rpm)
        self.ambient_c = float(ambient_c)
        self.clock = clock
        rng = random.Random(self.seed)
        self.f1 = self.rpm / 60.0
        self._salt = rng.getrandbits(32)
        # Harmonic velocities (mm/s RMS) -> acceleration amplitudes (g peak), per axis gains.
        v = (rng.uniform(0.72, 0.88), rng.uniform(0.30, 0.45), rng.uniform(0.10, 0.20))
        self._h_amp = [peak_g_for_velocity(v[h], (h + 1) * self.f1) for h in range(3)]
        self._axis_gain = ((1.0, 1.0, 1.0), (0.75, 0.8, 0.9), (0.45, 0.9, 0.7))  # [axis][harmonic]
        self._phase = [[rng.uniform(0, TWO_PI) for _ in range(3)] for _ in range(3)]
        # Per axis and harmonic: (S, C) with a*sin(h theta + phi) = S sin(h theta) + C cos(h theta).
        # As columns (3, 1), one per harmonic and term, to make the three axes at once.
        self._coef_cols = [tuple(_np.array([[self._h_amp[h] * self._axis_gain[ax][h] * f(self._phase[ax][h])]
                                            for ax in range(3)]) for f in (math.cos, math.sin)) for h in range(3)]
        self._noise_g = rng.uniform(0.006, 0.010)
        self._tilt = (rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03))
        self._offsets = _np.array([[self._tilt[0]], [self._tilt[1]], [1.0]])  # gravity on z
        # Imbalance: the 1x factor at which the x axis (the largest) reaches the target velocity.
        target = rng.uniform(*_IMBALANCE_V_MM_S)
        self._imb_gain = math.sqrt(target ** 2 - v[1] ** 2 - v[2] ** 2) / v[0] - 1.0
        # Bearing: mean square of the healthy signal per axis, and of an impact train of unit size
        # (a ring-down a*exp(-t/tau)*cos(w t) has energy a^2 tau / 4 per impact).
        self._healthy_ms = [sum((self._h_amp[h] * self._axis_gain[ax][h]) ** 2 / 2 for h in range(3))
                            + self._noise_g ** 2 for ax in range(3)]
        self._healthy_ms_col = _np.array(self._healthy_ms)[:, None]
        self._impact_ms = _IMPACT_TAU_S / 4 * _BPFO_ORDER * self.f1 * (1 + _IMPACT_SIZE_SD ** 2)
        self._impact_g = math.sqrt(_BEARING_SHARE * self._healthy_ms[1] / self._impact_ms)
        # Machines are already partly warm when the simulation starts.
        self._warm_s = rng.uniform(20, 120) * 60.0
        self._rise_scale = rng.uniform(0.85, 1.15)
        self._t_seen = 0.0
        start = {loc: self._steady_start(loc) for loc in ("bearing", "winding", "chip")}
        # Segments between mode changes: (t_start, mode, lagged rises at origin, origin time).
        # The first covers all time before any change; its lag starts from t = 0.
        self._segments = [(float("-inf"), mode, start, 0.0)]
        self._seg_times = [float("-inf")]

    @classmethod
    def for_scenario(cls, seed, scenario, onset_s=ONSET_S, **kwargs):
        """A healthy machine whose `scenario` fault (a mode) starts at board time onset_s."""
        if scenario not in MODES:
            raise ValueError("unknown scenario %r (one of %s)" % (scenario, ", ".join(MODES)))
        machine = cls(seed, **kwargs)
        if scenario != "normal":
            machine.set_mode(scenario, t=onset_s)
        return machine

    # ----- modes -----
    @property
    def mode(self):
        return self._segments[-1][1]

    @property
    def mode_changes(self):
        """[(t, mode), ...] for every set_mode() so far."""
        return [(seg[0], seg[1]) for seg in self._segments[1:]]

    def set_mode(self, mode, t=None):
        """Switch to `mode` at time t (default: the board clock, else the latest time asked about)."""
        if mode not in MODES:
            raise ValueError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
        if t is None:
            t = self.clock() if self.clock else self._t_seen
        t = float(t)
        if t < self._seg_times[-1]:
            raise ValueError("set_mode cannot go back in time")
        temps = {loc: self._lagged(loc, t) for loc in ("bearing", "winding", "chip")}
        self._segments.append((t, mode, temps, t))
        self._seg_times.append(t)

    def _segment(self, t):
        i = bisect.bisect_right(self._seg_times, t) - 1
        return self._segments[max(i, 0)]

    # ----- temperature -----
    def _ambient(self, t):
        return self.ambient_c + 0.8 * math.sin(TWO_PI * t / 7200.0 + (self._salt % 628) / 100.0)

    def _target_rise(self, loc, mode):
        _, normal, overheat, _ = _THERMAL[loc]
        if mode == "overheat":
            return overheat
        rise = normal + (5.0 if mode == "imbalance" and loc == "bearing" else 0.0)
        return rise * self._rise_scale if loc != "chip" else rise

    def _steady_start(self, loc):
        tau = _THERMAL[loc][0]
        return self._target_rise(loc, "normal") * (1.0 - math.exp(-self._warm_s / tau))

    def _lagged(self, loc, t):
        """Temperature rise above ambient (K) for a lagged location, without noise."""
        _, mode, temps, origin = self._segment(t)
        tau = _THERMAL[loc][0]
        target = self._target_rise(loc, mode)
        dt = max(0.0, t - origin)
        return target + (temps[loc] - target) * math.exp(-dt / tau)

    def temperature(self, location, t):
        if location not in LOCATIONS:
            raise ValueError("unknown location %r (one of %s)" % (location, ", ".join(LOCATIONS)))
        t = float(t)
        self._t_seen = max(self._t_seen, t)
        base = self._ambient(t)
        if location != "ambient":
            base += self._lagged(location, t)
        noise = _NOISE[_mix(self._salt + LOCATIONS.index(location), int(math.floor(t)))]
        return base + _THERMAL[location][3] * noise

    # ----- vibration -----
    def acceleration(self, t0, n, rate_hz):
        """Three lists of n accelerations (g) for sample times t0 + k / rate_hz."""
        return tuple(self.acceleration_block(t0, n, rate_hz).tolist())

    def acceleration_block(self, t0, n, rate_hz):
        """acceleration() as one float64 array of shape (3, n): rows x, y, z (what the register
        models use to make a block of samples at once)."""
        t0 = float(t0)
        rate = float(rate_hz)
        dt = 1.0 / rate
        self._t_seen = max(self._t_seen, t0 + n * dt)
        k = _np.arange(n)
        # Fault levels are taken at each sample's own instant, so a sample has one value however
        # the windows are cut (a scalar while the level cannot change: no fault, or a steady one).
        t = t0 + k * dt if len(self._segments) > 1 else None
        imb = self._fault_level_at("imbalance", t)
        imb = None if _zero(imb) else self._imb_gain * imb
        brg = self._fault_level_at("bearing", t)
        brg = None if _zero(brg) else brg

        # Per axis (rows): sum over harmonics h of a*sin(h*theta + phi) = S_h sin(h theta) + C_h cos(h theta).
        w = TWO_PI * self.f1
        th = math.fmod(w * t0, TWO_PI) + (w * dt) * k
        s = _np.sin(th)
        c = _np.cos(th)
        s2 = 2.0 * s * c
        c2 = c * c - s * s
        s3 = s * (3.0 - 4.0 * s * s)
        c3 = c * (4.0 * c * c - 3.0)
        (s1, c1), (sh2, ch2), (sh3, ch3) = self._coef_cols
        one = s1 * s + c1 * c
        if imb is not None:
            one *= 1.0 + imb

        # Noise index is linear in the global sample number, so a sample instant always gets the
        # same noise however the windows are cut.
        stride = 40503      # odd: walks the whole table
        k0 = int(round(t0 * rate))
        ix = (_mix(self._salt, int(rate * 1000.0)) + k0 * stride + k * stride) & _TABLE_MASK
        out = one + sh2 * s2 + ch2 * c2 + sh3 * s3 + ch3 * c3 \
            + self._noise_g * _NOISE_NP[(ix + _NOISE_SHIFTS) & _TABLE_MASK]
        if brg is not None:
            # The impacts take over part of each axis's mean square: the rest shrinks to keep RMS steady.
            out *= _np.sqrt(_np.maximum(0.0, 1.0 - (_IMPACT_AXIS_COL * self._impact_g * brg) ** 2
                                        * self._impact_ms / self._healthy_ms_col))
        out += self._offsets
        if brg is not None:
            self._add_impacts(out, t0, dt)
        return out

    def _fault_level_at(self, mode, t):
        """Severity 0..1 of `mode` at each instant of the array t: 0.0 or 1.0 (floats)
        where it cannot change over t, else an array."""
        segs = self._segments
        if len(segs) == 1:  # (t may be None then)
            return 1.0 if segs[0][1] == mode else 0.0
        first = max(bisect.bisect_right(self._seg_times, float(t.min())) - 1, 0)
        last = max(bisect.bisect_right(self._seg_times, float(t.max())) - 1, 0)
        if first == last:
            t_start, seg_mode = segs[first][0], segs[first][1]
            if seg_mode != mode:
                return 0.0
            if t_start == float("-inf"):
                return 1.0
            return self._growth(mode, t - t_start)
        # The window spans a mode change: segment by segment.
        level = _np.zeros(len(t))
        idx = _np.searchsorted(self._seg_times, t, side="right") - 1
        for i in range(first, last + 1):
            t_start, seg_mode = segs[i][0], segs[i][1]
            if seg_mode == mode:
                sel = idx == i
                level[sel] = 1.0 if t_start == float("-inf") else self._growth(mode, t[sel] - t_start)
        return level

    @staticmethod
    def _growth(mode, age):
        tau = _IMBALANCE_TAU_S if mode == "imbalance" else _BEARING_TAU_S
        return 1.0 - _np.exp(-age / tau)

    def _add_impacts(self, out, t0, dt):
        """Outer-race impacts: one ring-down per BPFO period, with slip jitter and varying size,
        each sized by the fault's level at its own instant."""
        period = 1.0 / (_BPFO_ORDER * self.f1)
        n = out.shape[1]
        t_end = t0 + n * dt
        salt = self._salt + 17
        times, sizes = [], []
        m = int(math.floor(t0 / period)) - 1
        while True:
            t_imp = (m + 0.08 * _NOISE[_mix(salt, m)]) * period
            if t_imp > t_end:
                break
            times.append(t_imp)
            sizes.append(1.0 + _IMPACT_SIZE_SD * _NOISE[_mix(salt + 1, m)])
            m += 1
        if not times:
            return
        t_imp = _np.array(times)
        level = self._fault_level_at("bearing", t_imp)
        size = self._impact_g * _np.asarray(level) * _np.array(sizes)
        # Each impact rings over the samples from the first at or after it, for `span` seconds.
        span = 10.0 * _IMPACT_TAU_S
        k = _np.maximum(0, _np.ceil((t_imp - t0) / dt)).astype(_np.int64)
        ks = k[:, None] + _np.arange(int(math.ceil(span / dt)) + 2)[None, :]
        age = t0 + ks * dt - t_imp[:, None]
        keep = (ks < n) & (age <= span)
        ks, age = ks[keep], age[keep]
        v = (_np.broadcast_to(size[:, None], keep.shape)[keep] * _np.exp(-age / _IMPACT_TAU_S)
             * _np.cos(TWO_PI * _RING_HZ * age))
        ring = _np.bincount(ks, weights=v, minlength=n)
        out += _np.array(_IMPACT_AXIS)[:, None] * ring
