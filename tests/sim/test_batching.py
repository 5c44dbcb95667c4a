"""Telemetry batching end to end: the real firmware on a simulated board, a real mosquitto.

A record waits at most intervals.send_s for others to go with it; 10 waiting go at once; an alarm
goes at once and takes the waiting records along (docs/contract.md). Every record still arrives
exactly once, in order. Board time runs on the virtual clock held by the test, and messages are
stamped with the board time at which they were seen.
"""

import json
import queue
import time

import paho.mqtt.client as mqtt
import pytest

from floorwatch.contract import records, validate
from floorwatch.sim.fleet import Fleet

pytestmark = pytest.mark.broker


class Run:
    def __init__(self, broker, workdir, site, intervals, **fleet_args):
        self.inbox = queue.Queue()
        self.seen = []  # (board time seen, kind, body)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = lambda c, u, msg: self.inbox.put((msg.topic.rsplit("/", 1)[-1], msg.payload))
        self.client.connect(broker.host, broker.port, 30)
        self.client.subscribe("floorwatch/%s/+/+" % site, qos=1)
        self.client.loop_start()
        self.fleet = Fleet(1, broker.host, broker.port, site=site, workdir=workdir, intervals=intervals,
                           speed="max", **fleet_args)
        self.clock = self.fleet.vclock.join()
        self.fleet.start()

    def run(self, board_s, step_s=1.0, settle_s=0.05):
        end = self.clock.now() + board_s
        while self.clock.now() < end:
            self.clock.wait(step_s)
            deadline = time.monotonic() + settle_s
            while True:
                try:
                    kind, payload = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                body = validate(kind, payload) if kind == "telemetry" else json.loads(payload)  # raises if not
                self.seen.append((self.clock.now(), kind, body))

    def telemetry(self):
        return [(at, body) for at, kind, body in self.seen if kind == "telemetry"]

    def close(self):
        self.clock.leave()
        self.fleet.close()
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def make_run(broker, tmp_path):
    made = []

    def make(site, intervals, **kw):
        made.append(Run(broker, tmp_path / site, site, intervals, **kw))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _seqs(messages):
    out = []
    for _, body in messages:
        out.extend((body["boot"], body["seq"] + i) for i in range(body["n"]))
    return out


def test_a_record_waits_at_most_send_s_and_every_record_arrives_once(make_run):
    run = make_run("batch-age", {"temp_s": 30, "vib_s": 600, "diag_s": 600, "send_s": 60})
    run.run(400, step_s=2)
    messages = run.telemetry()
    assert len(messages) >= 4, messages  # records at 0, 30, 60 s go at 60 s; the next three at 150 s ...
    for at, body in messages:
        ups = [r["up"] for r in records(body)]
        assert body["n"] >= 2  # batched: a message every send_s, not every record
        assert ups[-1] - ups[0] <= 60000, ups
        oldest_s = ups[0] / 1000  # up counts from power-on, board time from 0: the same clock
        assert at - oldest_s <= 60 + 2, (at, ups)  # seen within send_s (+ a step) of the oldest record
    seqs = _seqs(messages)
    assert seqs == [(1, i) for i in range(len(seqs))]  # each once, in order, none missing


def test_ten_waiting_records_go_at_once(make_run):
    run = make_run("batch-full", {"temp_s": 5, "vib_s": 600, "diag_s": 600, "send_s": 3600})
    run.run(180, step_s=2)
    messages = run.telemetry()
    assert len(messages) >= 3, messages
    assert {body["n"] for _, body in messages} == {10}
    assert _seqs(messages) == [(1, i) for i in range(10 * len(messages))]


def test_an_alarm_takes_the_waiting_records_along(make_run):
    run = make_run("batch-alarm", {"temp_s": 10, "vib_s": 600, "diag_s": 600, "send_s": 3600},
                   mode="overheat", onset_s=60)
    run.run(1800, step_s=10)
    raised = [(at, body) for at, kind, body in run.seen if kind == "alarm" and body.get("event") == "raise"]
    assert raised, "the overheat raised no alarm in 30 board minutes"
    first_at = raised[0][0]
    messages = run.telemetry()
    with_alarm = [body for at, body in messages if at == first_at]
    # send_s is an hour and fewer than 10 records were waiting: only the alarm sent them.
    assert with_alarm and 1 <= with_alarm[0]["n"] < 10, (first_at, [(at, b["n"]) for at, b in messages])
    assert _seqs(messages) == [(1, i) for i in range(len(_seqs(messages)))]
