"""The status LED (config `led`): a plain GPIO LED or one WS2812 pixel, blinked by `identify`.

Blinking never blocks the main loop: the loop calls service() once a pass and waits no longer than
it asks. A pass that is busy (a 1-Wire conversion, a vibration window) only makes one toggle late,
which a technician looking for the board does not notice; a machine.Timer would be steadier but
would drive the pin (and neopixel's bit-banged write) from an interrupt context for no real gain.
"""
import machine
import time
from micropython import const

_TOGGLE_MS = const(250)  # 2 Hz: quick enough to stand out from a power LED
_COLOR = (0, 0, 160)  # WS2812: blue, bright without dazzling
_OFF = (0, 0, 0)


class StatusLed:
    def __init__(self, pin, kind):
        self._pin = machine.Pin(pin, machine.Pin.OUT, value=0)
        self._pixels = None
        if kind == "ws2812":
            import neopixel  # only on boards that have one: spares the heap elsewhere

            self._pixels = neopixel.NeoPixel(self._pin, 1)
        self._until = None  # ticks_ms when blinking ends; None: not blinking
        self._next = 0  # ticks_ms of the next toggle
        self.lit = False
        self._show(False)

    def _show(self, on):
        self.lit = on
        if self._pixels is None:
            self._pin.value(1 if on else 0)
        else:
            self._pixels[0] = _COLOR if on else _OFF
            self._pixels.write()

    def blink(self, ms):
        """Blink for ms from now (0: stop now, LED off); a new call replaces a running blink."""
        if ms <= 0:
            self._until = None
            self._show(False)
            return
        now = time.ticks_ms()
        self._until = time.ticks_add(now, ms)
        self._next = now
        self.service()

    def service(self):
        """Toggle when due; returns ms until the next toggle is due, or None when not blinking."""
        if self._until is None:
            return None
        now = time.ticks_ms()
        if time.ticks_diff(now, self._until) >= 0:
            self._until = None
            self._show(False)
            return None
        if time.ticks_diff(now, self._next) >= 0:
            self._show(not self.lit)
            self._next = time.ticks_add(now, _TOGGLE_MS)
        return max(0, time.ticks_diff(self._next, now))
