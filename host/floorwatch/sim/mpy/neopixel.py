"""Fake MicroPython `neopixel` module: NeoPixel over a simulated pin.

Like MicroPython's driver, it keeps the colours in a GRB(W) byte buffer and sends nothing until
write(). What the strip shows after each write() is kept per pin in `board.neopixels`
({pin number: [(r, g, b) or (r, g, b, w), ...]}), so a test reads what the LEDs display, not what
the firmware meant to show.
"""

from . import new_module

_ORDER = (1, 0, 2, 3)  # MicroPython's ORDER: byte i of a pixel holds colour component _ORDER[i]


def module(board):
    class NeoPixel:
        ORDER = _ORDER

        def __init__(self, pin, n, bpp=3, timing=1):
            if bpp not in (3, 4):
                raise ValueError("bpp must be 3 or 4")
            self.pin = pin
            self.n = n
            self.bpp = bpp
            self.buf = bytearray(n * bpp)
            self.pin.init(pin.OUT)
            self.timing = timing

        def __len__(self):
            return self.n

        def __setitem__(self, i, v):
            offset = i * self.bpp
            for j in range(self.bpp):
                self.buf[offset + self.ORDER[j]] = v[j]

        def __getitem__(self, i):
            offset = i * self.bpp
            return tuple(self.buf[offset + self.ORDER[j]] for j in range(self.bpp))

        def fill(self, v):
            for i in range(self.n):
                self[i] = v

        def write(self):
            board.checkpoint()
            board.neopixels[self.pin._number] = [self[i] for i in range(self.n)]

    return new_module("neopixel", __doc__, NeoPixel=NeoPixel)
