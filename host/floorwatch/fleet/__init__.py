"""The fleet: a monitor (state, store, alerts, dashboard), export, and remote commands; `floorwatch fleet`."""
