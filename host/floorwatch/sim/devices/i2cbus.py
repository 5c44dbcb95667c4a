"""I2C bus model: addressing, register pointer and bus errors for simulated devices.

The fake `machine.I2C` of a board delegates every transaction to one I2CBus. Devices only implement
`read(reg, n) -> bytes` and `write(reg, data)`; the bus decides who answers and how transactions
fail, so every device model gets the ESP32 hardware-I2C error behaviour for free: an absent or
unplugged device NACKs its address, which MicroPython reports as OSError(ENODEV).

Fault injection, for tests and chaos campaigns: `fail(addr, code, count)` makes transactions with
one device raise OSError(code) until `heal(addr)` (or for the next `count` of them) — ENODEV for a
device that stopped answering, ETIMEDOUT for a bus held low; `inject_error` hits whatever the next
transactions are, on any address. The error comes before the device sees anything: a failed write
changes no register.
"""

import errno

SCAN_FIRST = 0x08
SCAN_LAST = 0x77


def bus_error(code):
    """OSError as MicroPython raises it, with `errno` set and args[0] == code."""
    return OSError(code, errno.errorcode.get(code, str(code)))


class I2CDevice:
    """Base for register-level device models (7-bit address, plug state)."""

    def __init__(self, addr):
        self.addr = addr
        self.present = True

    def read(self, reg, n):
        raise NotImplementedError

    def write(self, reg, data):
        raise NotImplementedError

    def next_reg(self, reg, n):
        """Register pointer after an n-byte access starting at reg (auto-increment by default)."""
        return (reg + n) & 0xFF


class I2CBus:
    """One I2C bus (a pair of pins) with any number of attached devices."""

    def __init__(self):
        self._devices = {}
        self._pointers = {}
        self._own_pointer = set()  # addresses of devices with their own next_reg
        self._errors = []          # errno codes for the next transactions, in order
        self._faults = {}          # addr -> [errno code, transactions left or None: until healed]
        self.transactions = 0      # completed or failed transactions (for diagnostics in tests)

    def attach(self, device):
        if not 0 <= device.addr <= 0x7F:
            raise ValueError("I2C address out of range: %r" % device.addr)
        self._devices[device.addr] = device
        self._pointers[device.addr] = 0
        if type(device).next_reg is not I2CDevice.next_reg:
            self._own_pointer.add(device.addr)
        else:
            self._own_pointer.discard(device.addr)
        return device

    def detach(self, addr):
        self._devices.pop(addr, None)
        self._pointers.pop(addr, None)
        self._own_pointer.discard(addr)

    def device(self, addr):
        return self._devices.get(addr)

    def addresses(self):
        """The addresses of the attached devices, plugged in or not, in order."""
        return sorted(self._devices)

    def scan(self):
        # A scan is an address probe per address; injected errors are left for real transfers,
        # except that a device failing with ENODEV does not acknowledge its address either.
        return sorted(a for a, d in self._devices.items()
                      if d.present and SCAN_FIRST <= a <= SCAN_LAST
                      and self._faults.get(a, (None,))[0] != errno.ENODEV)

    def inject_error(self, errno_code, count=1):
        self._errors.extend([errno_code] * count)

    def fail(self, addr, errno_code, count=None):
        """Transactions with `addr` raise OSError(errno_code): the next `count`, or all until heal(addr)."""
        if count is not None and (type(count) is not int or count < 1):
            raise ValueError("count must be None or a whole number above 0, not %r" % (count,))
        self._faults[addr] = [errno_code, count]

    def heal(self, addr):
        self._faults.pop(addr, None)

    def _target(self, addr):
        self.transactions += 1
        if self._errors:
            raise bus_error(self._errors.pop(0))
        fault = self._faults.get(addr)
        if fault is not None:
            code, left = fault
            if left is not None:
                if left <= 1 and self._faults.get(addr) is fault:  # not a newer fail() for addr
                    self._faults.pop(addr, None)
                fault[1] = left - 1
            raise bus_error(code)
        dev = self._devices.get(addr)
        if dev is None or not dev.present:
            raise bus_error(errno.ENODEV)
        return dev

    def readfrom_mem_into(self, addr, reg, buf):
        # A FIFO drain calls this once a sample: _target's checks inline while no fault is armed.
        if self._errors or self._faults:
            dev = self._target(addr)
        else:
            self.transactions += 1
            dev = self._devices.get(addr)
            if dev is None or not dev.present:
                raise bus_error(errno.ENODEV)
        reg &= 0xFF
        n = len(buf)
        data = dev.read(reg, n)
        buf[:] = data if type(data) is bytes else bytes(data)
        self._pointers[addr] = dev.next_reg(reg, n) if addr in self._own_pointer else (reg + n) & 0xFF

    def readfrom_mem(self, addr, reg, n):
        buf = bytearray(n)
        self.readfrom_mem_into(addr, reg, buf)
        return bytes(buf)

    def writeto_mem(self, addr, reg, data):
        dev = self._target(addr)
        data = bytes(data)
        dev.write(reg & 0xFF, data)
        self._pointers[addr] = dev.next_reg(reg & 0xFF, len(data))

    def readfrom_into(self, addr, buf):
        dev = self._target(addr)
        reg = self._pointers.get(addr, 0)
        n = len(buf)
        buf[:] = bytes(dev.read(reg, n))
        self._pointers[addr] = dev.next_reg(reg, n)

    def writeto(self, addr, data):
        dev = self._target(addr)
        data = bytes(data)
        if not data:
            return  # an address-only write: the device ACKed, nothing else happens
        reg = data[0]
        if len(data) > 1:
            dev.write(reg, data[1:])
        self._pointers[addr] = dev.next_reg(reg, len(data) - 1)
