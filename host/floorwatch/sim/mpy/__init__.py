"""Fake MicroPython modules for simulated boards.

Each file is one MicroPython module. It exposes `module(board)`, which builds that module for one
board: classes and functions close over the board, so boards in one process never share state.
They reproduce MicroPython's behaviour and errors (not CPython's) where the firmware can tell the
difference.
"""

import types


def new_module(name, doc=None, **attrs):
    module = types.ModuleType(name, doc)
    module.__dict__.update(attrs)
    return module
