"""MPU-6050 accelerometer driver: FIFO-streamed vibration windows over I2C (gyro unused).

The chip samples at 1 kHz / (1 + SMPLRT_DIV) with its low-pass filter set below Nyquist, and
pushes accelerometer frames (6 bytes, big-endian) into its 1024-byte FIFO. The driver reads
FIFO_COUNT and drains whole frames in bursts into a preallocated buffer. On FIFO overflow the
oldest bytes are lost and frames lose alignment, so the FIFO is reset and the overrun counted.
"""

from micropython import const
import time

from node.fifo import BURST as _BURST, FifoAccelerometer

_SMPLRT_DIV = const(0x19)
_CONFIG = const(0x1A)
_ACCEL_CONFIG = const(0x1C)
_FIFO_EN = const(0x23)
_INT_STATUS = const(0x3A)
_USER_CTRL = const(0x6A)
_PWR_MGMT_1 = const(0x6B)
_FIFO_COUNTH = const(0x72)
_FIFO_R_W = const(0x74)
_WHO_AM_I = const(0x75)

_WHO_AM_I_VALUE = const(0x68)
_RESET = const(0x80)
_CLK_PLL_X = const(0x01)    # awake, clocked from the X gyro PLL (steadier than the internal RC)
_FIFO_ACCEL = const(0x08)
_USER_FIFO_EN = const(0x40)
_USER_FIFO_RESET = const(0x04)
_FIFO_OFLOW = const(0x10)
_FRAME = const(6)

_RANGES = {2: 0, 4: 1, 8: 2, 16: 3}
# DLPF_CFG by the lowest sample rate it suits: accel bandwidth 184/94/44/21/10/5 Hz stays below
# Nyquist. A non-zero DLPF_CFG also sets the 1 kHz base rate.
_DLPF = ((500, 1), (200, 2), (100, 3), (50, 4), (20, 5), (0, 6))


class MPU6050(FifoAccelerometer):
    def __init__(self, i2c, addr=0x68, range_g=4, odr_hz=1000):
        if range_g not in _RANGES:
            raise ValueError("range_g must be 2, 4, 8 or 16")
        if odr_hz < 4 or odr_hz > 1000 or 1000 % odr_hz:
            raise ValueError("odr_hz must divide 1000")
        super().__init__(i2c, addr, odr_hz, 1 / (16384 >> _RANGES[range_g]))
        self.range_g = range_g
        self._b2 = bytearray(2)
        self._burst = bytearray(_FRAME * _BURST)
        mv = memoryview(self._burst)
        # Views for every burst length, made once so the read loop allocates nothing.
        self._views = [mv[:_FRAME * k] for k in range(_BURST + 1)]
        ident = self._read(_WHO_AM_I)
        if ident != _WHO_AM_I_VALUE:
            raise ValueError("wrong device id 0x%02x" % ident)
        self._write(_PWR_MGMT_1, _RESET)
        time.sleep_ms(100)          # the register map asks for 100 ms after DEVICE_RESET
        self._write(_PWR_MGMT_1, _CLK_PLL_X)
        for rate, cfg in _DLPF:
            if odr_hz >= rate:
                self._write(_CONFIG, cfg)
                break
        self._write(_SMPLRT_DIV, 1000 // odr_hz - 1)
        self._write(_ACCEL_CONFIG, _RANGES[range_g] << 3)
        self._write(_FIFO_EN, _FIFO_ACCEL)
        self._restart_fifo()

    def _restart_fifo(self):
        # FIFO_RESET takes effect with FIFO_EN cleared; then re-enable and drop the overflow flag.
        self._write(_USER_CTRL, _USER_FIFO_RESET)
        self._write(_USER_CTRL, _USER_FIFO_EN)
        self._read(_INT_STATUS)

    def _available(self):
        self.i2c.readfrom_mem_into(self.addr, _FIFO_COUNTH, self._b2)
        return ((self._b2[0] << 8) | self._b2[1]) // _FRAME

    def _drain(self, buf, j, count):
        if count > _BURST:
            count = _BURST
        self.i2c.readfrom_mem_into(self.addr, _FIFO_R_W, self._views[count])
        # Checked after the burst, so an overflow at any moment up to now is caught: lost bytes
        # break frame alignment, so drop this burst and start the FIFO over.
        if self._read(_INT_STATUS) & _FIFO_OFLOW:
            self.overruns += 1
            self._restart_fifo()
            return 0
        b = self._burst
        k = 0
        for _ in range(3 * count):
            v = (b[k] << 8) | b[k + 1]
            buf[j] = v - 65536 if v & 0x8000 else v
            j += 1
            k += 2
        return count
