"""`floorwatch sim` as a user runs it: a subprocess, a real broker, an independent observer."""

import subprocess
import sys
from pathlib import Path

import pytest

from floorwatch.observer import Observer

FLOORWATCH = str(Path(sys.executable).with_name("floorwatch"))


def floorwatch(*args, timeout=60):
    return subprocess.run([FLOORWATCH, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.broker
def test_five_boards_online_in_order_then_offline(broker):
    ids = ["sim-%03d" % i for i in range(1, 6)]
    with Observer(broker.host, broker.port, site="clitest") as obs:
        proc = subprocess.Popen([FLOORWATCH, "sim", "--boards", "5", "--broker", broker.url, "--duration", "14",
                                 "--site", "clitest", "--seed", "7"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert obs.wait_for(lambda o: all(i in o.devices and o.devices[i].state == "online" for i in ids), 20)
            with Observer(broker.host, broker.port, site="clitest") as late:  # sees only what is retained
                assert late.wait_for(lambda o: all(i in o.devices and o.devices[i].state == "online" for i in ids), 5)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert obs.wait_for(lambda o: all(o.devices[i].state == "offline" for i in ids), 10)
        for view in obs.snapshot():
            seqs = [seq for boot, seq in view.records]
            assert len(seqs) >= 2 and seqs == list(range(len(seqs))), (view.device_id, view.records)
        assert obs.violations == []
    assert "5 of 5 boards published telemetry" in out


@pytest.mark.parametrize("args, words", [
    (["sim", "--boards", "0"], "--boards"),
    (["sim", "--boards", "many"], "--boards"),
    (["sim", "--broker", "http://example"], "--broker"),
    (["sim", "--duration", "-3"], "--duration"),
    (["sim", "--site", "Not A Site"], "--site"),
    (["simulate"], "No such command"),
])
def test_bad_arguments_give_one_line_and_no_traceback(args, words):
    result = floorwatch(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("floorwatch: error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_broker_is_one_line():
    result = floorwatch("sim", "--broker", "mqtt://127.0.0.1:1", "--duration", "1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "floorwatch: error: cannot reach the broker at 127.0.0.1:1 ([Errno 111] Connection refused)"]
