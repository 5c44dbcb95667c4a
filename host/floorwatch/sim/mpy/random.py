"""`random` seeded per board, so a simulation with the same seed behaves the same."""

import random as _host_random

from . import new_module


def module(board):
    rng = _host_random.Random(board.seed * 7919 + board.boots)
    return new_module(
        "random", __doc__, getrandbits=rng.getrandbits, randint=rng.randint, randrange=rng.randrange,
        random=rng.random, uniform=rng.uniform, choice=rng.choice, seed=rng.seed,
    )
