"""One fleet over several worker processes (sim/shard.py, `floorwatch sim --processes P`), for real:
spawned workers, a real mosquitto, an independent observer."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from floorwatch.observer import Observer
from floorwatch.sim.fleet import Fleet
from floorwatch.sim.shard import ShardedFleet, ShardError, check, split

FLOORWATCH = str(Path(sys.executable).with_name("floorwatch"))
IDS = ["sim-%03d" % i for i in range(1, 7)]


def _online(ids):
    return lambda o: all(i in o.devices and o.devices[i].state == "online" and o.devices[i].records for i in ids)


def _offline(ids):
    return lambda o: all(i in o.devices and o.devices[i].state == "offline" for i in ids)


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open("/proc/%d/stat" % pid) as f:  # a zombie no one has reaped yet is gone too
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_split_gives_contiguous_even_blocks_and_no_empty_worker():
    assert split(6, 2) == [range(0, 3), range(3, 6)]
    assert split(7, 3) == [range(0, 3), range(3, 5), range(5, 7)]
    assert split(2, 5) == [range(0, 1), range(1, 2)]
    assert [i for block in split(1000, 7) for i in block] == list(range(1000))


def test_the_virtual_clock_stays_in_one_process():
    check(1.0, 4)
    check("max", 1)
    check(50.0, 2)  # scaled time: every board has a clock of its own
    with pytest.raises(ShardError, match="--speed max") as info:
        check("max", 2)
    assert "\n" not in str(info.value)
    with pytest.raises(ShardError):
        ShardedFleet(4, "127.0.0.1", 1883, 2, speed="max")


@pytest.mark.broker
def test_six_boards_over_two_processes_each_once_same_as_one_process_then_clean_exit(broker, tmp_path):
    passwords = {i: "pw-%s-0123456789" % i for i in IDS}
    with Observer(broker.host, broker.port, site="shard") as obs:
        fleet = ShardedFleet(6, broker.host, broker.port, 2, site="shard", seed=5, workdir=tmp_path / "w",
                             passwords=passwords)
        with fleet:
            assert fleet.wait_ready(60), fleet.failures
            assert obs.wait_for(_online(IDS), 30)
            assert obs.wait_for(lambda o: all(len(o.devices[i].records) >= 2 for i in IDS), 30)  # a few seconds
            stats = fleet.stats()
            pids = [s["pid"] for s in stats]
            assert len(set(pids)) == 2 and os.getpid() not in pids
            # every device id runs in exactly one worker, in contiguous blocks
            assert [sorted(s["boots"]) for s in stats] == [IDS[:3], IDS[3:]]
            assert all(boots == 1 for s in stats for boots in s["boots"].values())
            assert all(b.powered_at is not None for b in fleet.boards)
            assert 0 < fleet.board_time() < 60
        assert fleet.failures == []
        assert [shard.process.exitcode for shard in fleet.shards] == [0, 0]
        assert all(_gone(pid) for pid in pids)
        assert obs.wait_for(_offline(IDS), 10)  # the workers cut the power: the Last Wills came
        assert sorted(obs.devices) == IDS and obs.violations == []
        for view in obs.snapshot():  # one board each, one boot, records numbered without a gap
            assert [seq for boot, seq in view.records] == list(range(len(view.records)))
    # A board is the same whichever process runs it: its config (seed-derived sensor ROMs, login,
    # Wi-Fi) is what one process writes for it.
    alone = Fleet(6, broker.host, broker.port, site="shard", seed=5, workdir=tmp_path / "one", passwords=passwords)
    for board in alone.boards:
        sharded = tmp_path / "w" / board.device_id / "flash" / "config.json"
        assert json.loads(sharded.read_text()) == json.loads((board.flash_dir / "config.json").read_text())


@pytest.mark.broker
def test_a_worker_that_dies_is_one_line_and_the_others_run_on(broker, tmp_path):
    with Observer(broker.host, broker.port, site="shardkill") as obs:
        with ShardedFleet(4, broker.host, broker.port, 2, site="shardkill", workdir=tmp_path) as fleet:
            assert fleet.wait_ready(60), fleet.failures
            assert obs.wait_for(_online(IDS[:4]), 30)
            os.kill(fleet.shards[1].process.pid, signal.SIGKILL)
            assert obs.wait_for(_offline(IDS[2:4]), 30)  # the broker saw the connections drop
            assert fleet.failures == ["worker 2 (sim-003..sim-004) died: killed by SIGKILL"]
            assert fleet.shards[0].process.is_alive()
        assert fleet.failures == ["worker 2 (sim-003..sim-004) died: killed by SIGKILL"]
        assert fleet.shards[0].process.exitcode == 0


def test_a_worker_that_cannot_start_says_why_in_one_line(tmp_path, capfd):
    with ShardedFleet(2, "127.0.0.1", 1, 2, workdir=tmp_path, board_name="no-such-board") as fleet:
        assert not fleet.wait_ready(60)
        deadline = time.monotonic() + 30
        while len(fleet.failures) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        failures = fleet.failures
    assert len(failures) == 2 and failures[0].startswith("worker 1 (sim-001) failed: "), failures
    assert all("\n" not in line for line in failures)
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.broker
def test_cli_processes_runs_then_ctrl_c_stops_every_worker(broker):
    ids = IDS[:4]
    with Observer(broker.host, broker.port, site="shardcli") as obs:
        proc = subprocess.Popen([FLOORWATCH, "sim", "--boards", "4", "--processes", "2", "--broker", broker.url,
                                 "--site", "shardcli"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            assert obs.wait_for(_online(ids), 30)
            workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"],
                                                      capture_output=True, text=True).stdout.split()]
            assert len(workers) == 2
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group gets it
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
        assert "4 of 4 boards published telemetry" in out and "4 boards in 2 processes" in out
        assert all(_gone(pid) for pid in workers)
        assert obs.wait_for(_offline(ids), 10)


@pytest.mark.parametrize("args, words", [
    (["--processes", "0"], "--processes"),
    (["--processes", "many"], "--processes"),
    (["--processes", "2", "--scenario", "chaos", "--duration", "60"], "--processes"),
    (["--processes", "2", "--speed", "max"], "--speed max"),
])
def test_bad_process_options_give_one_line(args, words):
    result = subprocess.run([FLOORWATCH, "sim", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("floorwatch: error:"), result.stderr
