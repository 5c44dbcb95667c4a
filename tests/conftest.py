"""Shared fixtures: real mosquitto brokers on free loopback ports (see floorwatch.broker)."""

import pytest

from floorwatch.broker import Mosquitto


@pytest.fixture(scope="session")
def broker():
    """One running mosquitto for the whole session. Do not restart it: use fresh_broker."""
    with Mosquitto() as running:
        yield running


@pytest.fixture
def fresh_broker():
    """A mosquitto of this test's own, free to stop, start and restart."""
    with Mosquitto() as running:
        yield running
