"""`gc`: the collector calls are no-ops; heap figures are those of a plain ESP32 after boot."""

from . import new_module

HEAP_TOTAL = 111936  # GC heap of the esp32 port after its first growth


def module(board):
    state = {"threshold": -1, "enabled": True}

    def mem_alloc():
        return board.heap_used

    def mem_free():
        return HEAP_TOTAL - board.heap_used

    def threshold(amount=None):
        if amount is None:
            return state["threshold"]
        state["threshold"] = amount

    return new_module(
        "gc", __doc__, collect=lambda: None, enable=lambda: state.update(enabled=True),
        disable=lambda: state.update(enabled=False), isenabled=lambda: state["enabled"],
        mem_alloc=mem_alloc, mem_free=mem_free, threshold=threshold,
    )
