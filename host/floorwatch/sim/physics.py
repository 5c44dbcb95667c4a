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

Noise comes from one shared table of Gaussian numbers indexed by a hash of the sample instant, which
keeps a 512-sample window at about a millisecond of pure Python.
"""

import bisect
import math
import random

MODES = ("normal", "imbalance", "bearing", "overheat")
LOCATIONS = ("bearing", "winding", "ambient", "chip")
ONSET_S = 600.0                 # scenario faults start 10 simulated minutes after power-on

G = 9.80665
TWO_PI = 2.0 * math.pi

_TABLE_BITS = 16
_TABLE_MASK = (1 << _TABLE_BITS) - 1
_rng = random.Random(0x5EED)
_NOISE = [_rng.gauss(0.0, 1.0) for _ in range(1 << _TABLE_BITS)]
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
_RING_HZ = 700.0                # resolved at 1600 Hz too; too high to add much velocity


def _mix(a, b):
    """A small integer hash (splitmix-style) mapping (a, b) onto a table index."""
    h = (a * 0x9E3779B97F4A7C15 + b * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 31
    h = (h * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 29
    return h & _TABLE_MASK


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
        self._noise_g = rng.uniform(0.006, 0.010)
        self._tilt = (rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03))
        # Imbalance: the 1x factor at which the x axis (the largest) reaches the target velocity.
        target = rng.uniform(*_IMBALANCE_V_MM_S)
        self._imb_gain = math.sqrt(target ** 2 - v[1] ** 2 - v[2] ** 2) / v[0] - 1.0
        # Bearing: mean square of the healthy signal per axis, and of an impact train of unit size
        # (a ring-down a*exp(-t/tau)*cos(w t) has energy a^2 tau / 4 per impact).
        self._healthy_ms = [sum((self._h_amp[h] * self._axis_gain[ax][h]) ** 2 / 2 for h in range(3))
                            + self._noise_g ** 2 for ax in range(3)]
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

    def _fault_level(self, mode, t):
        """Severity 0..1 of the current segment's fault at time t (grows after the switch)."""
        t_start, seg_mode, _, _ = self._segment(t)
        if seg_mode != mode:
            return 0.0
        if t_start == float("-inf"):
            return 1.0
        tau = _IMBALANCE_TAU_S if mode == "imbalance" else _BEARING_TAU_S
        return 1.0 - math.exp(-(t - t_start) / tau)

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
        t0 = float(t0)
        rate = float(rate_hz)
        dt = 1.0 / rate
        t_mid = t0 + 0.5 * n * dt
        self._t_seen = max(self._t_seen, t0 + n * dt)
        imb = self._imb_gain * self._fault_level("imbalance", t_mid)
        brg = self._fault_level("bearing", t_mid)
        # The impacts take over part of each axis's mean square: the rest shrinks to keep RMS steady.
        shrink = [math.sqrt(max(0.0, 1.0 - (_IMPACT_AXIS[ax] * self._impact_g * brg) ** 2
                                * self._impact_ms / self._healthy_ms[ax])) for ax in range(3)]

        # Per axis: coefficients of sin/cos of h*theta (sum of a*sin(h*theta + phi)).
        coef = []
        for ax in range(3):
            row = []
            for h in range(3):
                a = self._h_amp[h] * self._axis_gain[ax][h] * shrink[ax]
                if h == 0:
                    a *= 1.0 + imb
                ph = self._phase[ax][h]
                row.append((a * math.cos(ph), a * math.sin(ph)))
            coef.append(row)
        (s1x, c1x), (s2x, c2x), (s3x, c3x) = coef[0]
        (s1y, c1y), (s2y, c2y), (s3y, c3y) = coef[1]
        (s1z, c1z), (s2z, c2z), (s3z, c3z) = coef[2]
        nx, ny, nz = (self._noise_g * k for k in shrink)
        ox, oy = self._tilt
        oz = 1.0

        # Rotation by one sample step keeps sin/cos of theta without a trig call per sample.
        w = TWO_PI * self.f1
        th0 = math.fmod(w * t0, TWO_PI)
        s, c = math.sin(th0), math.cos(th0)
        ds, dc = math.sin(w * dt), math.cos(w * dt)

        # Noise index is linear in the global sample number, so a sample instant always gets the
        # same noise however the windows are cut.
        stride = 40503      # odd: walks the whole table
        k0 = int(round(t0 * rate))
        ix = (_mix(self._salt, int(rate * 1000.0)) + k0 * stride) & _TABLE_MASK
        table = _NOISE
        mask = _TABLE_MASK
        xs = [0.0] * n
        ys = [0.0] * n
        zs = [0.0] * n
        for k in range(n):
            s2 = 2.0 * s * c
            c2 = c * c - s * s
            s3 = s * (3.0 - 4.0 * s * s)
            c3 = c * (4.0 * c * c - 3.0)
            xs[k] = ox + s1x * s + c1x * c + s2x * s2 + c2x * c2 + s3x * s3 + c3x * c3 \
                + nx * table[ix]
            ys[k] = oy + s1y * s + c1y * c + s2y * s2 + c2y * c2 + s3y * s3 + c3y * c3 \
                + ny * table[(ix + 21845) & mask]
            zs[k] = oz + s1z * s + c1z * c + s2z * s2 + c2z * c2 + s3z * s3 + c3z * c3 \
                + nz * table[(ix + 43690) & mask]
            ix = (ix + stride) & mask
            s, c = s * dc + c * ds, c * dc - s * ds

        if brg > 0.0:
            self._add_impacts(xs, ys, zs, t0, dt, brg)
        return xs, ys, zs

    def _add_impacts(self, xs, ys, zs, t0, dt, level):
        """Outer-race impacts: one ring-down per BPFO period, with slip jitter and varying size."""
        period = 1.0 / (_BPFO_ORDER * self.f1)
        amp = self._impact_g * level
        w = TWO_PI * _RING_HZ
        span = 10.0 * _IMPACT_TAU_S
        gx, gy, gz = _IMPACT_AXIS
        n = len(xs)
        t_end = t0 + n * dt
        m = int(math.floor(t0 / period)) - 1
        salt = self._salt + 17
        while True:
            jit = _NOISE[_mix(salt, m)]
            t_imp = (m + 0.08 * jit) * period
            if t_imp > t_end:
                break
            size = amp * (1.0 + _IMPACT_SIZE_SD * _NOISE[_mix(salt + 1, m)])
            k = max(0, int(math.ceil((t_imp - t0) / dt)))
            while k < n:
                age = t0 + k * dt - t_imp
                if age > span:
                    break
                v = size * math.exp(-age / _IMPACT_TAU_S) * math.cos(w * age)
                xs[k] += gx * v
                ys[k] += gy * v
                zs[k] += gz * v
                k += 1
            m += 1
