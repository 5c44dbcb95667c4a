"""`esp32` for one board: NVS namespaces kept in the board's nvs.json, and the chip's own sensor."""

from . import new_module

HEAP_DATA, HEAP_EXEC = 4, 1


def module(board):
    class NVS:
        def __init__(self, namespace):
            self._ns = namespace
            self._pending = dict(board.load_nvs().get(namespace, {}))

        def _get(self, key, kind):
            entry = self._pending.get(key)
            if entry is None or entry[0] != kind:
                raise OSError(-0x1102)  # ESP_ERR_NVS_NOT_FOUND
            return entry[1]

        def set_i32(self, key, value):
            self._pending[key] = ("i32", int(value))

        def get_i32(self, key):
            return self._get(key, "i32")

        def set_blob(self, key, value):
            self._pending[key] = ("blob", bytes(value).hex())

        def get_blob(self, key, buffer):
            data = bytes.fromhex(self._get(key, "blob"))
            if len(buffer) < len(data):
                raise OSError(-0x110C)  # ESP_ERR_NVS_INVALID_LENGTH
            buffer[: len(data)] = data
            return len(data)

        def erase_key(self, key):
            if self._pending.pop(key, None) is None:
                raise OSError(-0x1102)

        def commit(self):
            board.checkpoint()
            stored = board.load_nvs()
            stored[self._ns] = self._pending
            board.save_nvs(stored)

    def chip_celsius():
        return board.chip_temperature()

    def raw_temperature():  # the original ESP32: a raw reading in Fahrenheit
        return int(chip_celsius() * 1.8 + 32)

    def mcu_temperature():  # S2/S3/C3/C6: degrees Celsius
        return int(round(chip_celsius()))

    attrs = {"NVS": NVS, "HEAP_DATA": HEAP_DATA, "HEAP_EXEC": HEAP_EXEC,
             "idf_heap_info": lambda caps: [(327680, 180000, 110000, 150000)]}
    if board.chip == "esp32":
        attrs["raw_temperature"] = raw_temperature
    else:
        attrs["mcu_temperature"] = mcu_temperature
    return new_module("esp32", __doc__, **attrs)
