"""The loss ledger: the accounting on plain data, message reading, and the subscriber across a broker restart."""

import json
import time

import paho.mqtt.client as mqtt
import pytest

from floorwatch.broker import Mosquitto
from floorwatch.ledger import Ledger, Tally, account


@pytest.fixture(params=["dict", "tally"])
def received(request):
    """received(*seqs, copies={seq: n}): receipts of one boot, as a {seq: copies} dict or as a Tally
    (account() takes both)."""

    def make(*seqs, copies=None):
        got = {seq: 1 for seq in seqs}
        got.update(copies or {})
        if request.param == "dict":
            return got
        tally = Tally()
        for seq, n in got.items():
            tally.add(seq, n)
        return tally

    return make


def test_every_record_delivered_once_is_all_delivered(received):
    books = account({"a": {1: 3}}, {"a": {1: received(0, 1, 2)}}, {})
    assert books["devices"]["a"] == {"produced": 3, "delivered": 3, "duplicates": 0, "silently_lost": 0,
                                     "unexpected": 0, "after_end": 0, "dropped_counted": {"full": 0, "reset": 0}}
    assert books["totals"] == books["devices"]["a"]
    assert books["silently_lost_examples"] == [] and books["unexpected_examples"] == []


def test_extra_copies_are_duplicates_not_extra_deliveries(received):
    books = account({"a": {1: 3}}, {"a": {1: received(0, 1, 2, copies={1: 3, 2: 2})}}, {})
    row = books["devices"]["a"]
    assert (row["delivered"], row["duplicates"], row["silently_lost"]) == (3, 3, 0)


def test_missing_records_inside_declared_ranges_are_counted_by_why(received):
    declared = {"a": [(1, 2, 3, "full"), (2, 5, 100, "reset")]}   # boot 2's range runs past what it made
    books = account({"a": {1: 10, 2: 8}}, {"a": {1: received(0, 1, 5, 6, 7, 8, 9), 2: received(*range(5))}},
                    declared)
    row = books["devices"]["a"]
    assert row["dropped_counted"] == {"full": 3, "reset": 3}
    assert row["silently_lost"] == 0 and row["delivered"] == 12 and row["produced"] == 18


def test_an_open_ended_declaration_covers_the_rest_of_its_boot_only(received):
    declared = {"a": [(1, 4, None, "reset")]}  # n null: seq 4 and everything after it in boot 1
    books = account({"a": {1: 50, 2: 3}}, {"a": {1: received(0, 1, 2, 3, 7), 2: received(0, 2)}}, declared)
    row = books["devices"]["a"]
    assert row["dropped_counted"]["reset"] == 45 and row["delivered"] == 7
    assert row["silently_lost"] == 1 and books["silently_lost_examples"] == [{"device": "a", "boot": 2, "seq": 1, "n": 1}]


def test_a_declared_range_does_not_cover_another_boot(received):
    books = account({"a": {1: 4, 2: 4}}, {"a": {1: received(0, 1, 2, 3), 2: received(0, 3)}},
                    {"a": [(1, 0, 4, "reset")]})
    row = books["devices"]["a"]
    assert row["silently_lost"] == 2 and row["dropped_counted"]["reset"] == 0
    assert books["silently_lost_examples"] == [{"device": "a", "boot": 2, "seq": 1, "n": 2}]


def test_silent_loss_is_found_and_shown_as_runs(received):
    produced = {"a": {1: 10}, "b": {4: 5}}
    got = {"a": {1: received(0, 3, 4, 9)}, "b": {4: received(0, 1, 2, 3)}}
    books = account(produced, got, {"a": [(1, 1, 1, "full")]}, examples=2)
    assert books["devices"]["a"]["silently_lost"] == 5          # seqs 2, 5, 6, 7, 8
    assert books["devices"]["b"]["silently_lost"] == 1          # seq 4
    assert books["totals"]["silently_lost"] == 6
    assert books["totals"]["dropped_counted"]["full"] == 1
    assert books["silently_lost_examples"] == [{"device": "a", "boot": 1, "seq": 2, "n": 1},
                                               {"device": "a", "boot": 1, "seq": 5, "n": 4}]


def test_records_nobody_produced_are_unexpected(received):
    produced = {"a": {1: 2}}
    got = {"a": {1: received(0, 1, 2, 3), 7: received(0)}, "ghost": {1: received(0)}}
    books = account(produced, got, {})
    assert books["devices"]["a"]["unexpected"] == 3 and books["devices"]["a"]["delivered"] == 2
    assert books["devices"]["ghost"]["unexpected"] == 1 and books["devices"]["ghost"]["produced"] == 0
    assert books["totals"]["unexpected"] == 4
    assert books["unexpected_examples"][0] == {"device": "a", "boot": 1, "seq": 2, "n": 2}


def test_records_past_the_count_of_a_running_boot_are_after_the_end_not_unexpected(received):
    got = {"a": {1: received(0, 1), 2: received(0, 1, 2, 3)}}
    books = account({"a": {1: 2, 2: 2}}, got, {}, running={"a": 2})
    row = books["devices"]["a"]
    assert (row["after_end"], row["unexpected"], row["delivered"]) == (2, 0, 4)


def test_a_tally_reads_like_a_dict_of_copies():
    tally = Tally()
    for seq, copies in ((0, 1), (5, 2), (700, 300)):
        for _ in range(copies):
            tally.add(seq)
    assert [tally.get(s) for s in (0, 1, 5, 700, 10_000)] == [1, 0, 2, 300, 0]
    assert list(tally.items()) == [(0, 1), (5, 2), (700, 300)]
    assert tally.scan(6) == ([1, 2, 3, 4], 1)
    missing, extra = tally.scan(2000)                       # past the end of what arrived
    assert len(missing) == 1997 and missing[-1] == 1999 and extra == 1 + 299
    assert tally.beyond(6) == [700] and tally.beyond(701) == []
    books = account({"a": {1: 701}}, {"a": {1: tally}}, {})
    assert books["devices"]["a"]["duplicates"] == 1 + 299
    with pytest.raises(ValueError):
        tally.add(-1)


def telemetry(boot, seq, n, dropped=None):
    body = {"boot": boot, "seq": seq, "n": n, "cols": {"t": ["bearing"], "v": []},
            "r": [[1000 * i, [40.0]] for i in range(n)]}
    if dropped:
        body["dropped"] = [{"boot": b, "seq": s, "n": k, "why": w} for b, s, k, w in dropped]
    return json.dumps(body).encode()


def test_the_ledger_reads_telemetry_declarations_and_statuses():
    ledger = Ledger("127.0.0.1", 1, site="s")
    ledger.produced("n1", 3, 6)
    ledger.produced("n1", 4, 2)
    ledger.record("floorwatch/s/n1/telemetry", telemetry(3, 0, 2))
    ledger.record("floorwatch/s/n1/telemetry", telemetry(3, 1, 2))            # seq 1 again
    # Boot 4 declares that boot 3 lost 4.. in its reset, twice (a declaration can be repeated).
    for _ in range(2):
        ledger.record("floorwatch/s/n1/telemetry", telemetry(4, 0, 1, dropped=[(3, 4, 8, "reset")]))
    ledger.record("floorwatch/s/n1/status", json.dumps({"state": "online", "reason": "watchdog: sample"}))
    ledger.record("floorwatch/s/n1/status", json.dumps({"state": "offline"}))
    ledger.record("floorwatch/s/n1/status", json.dumps({"state": "online", "reason": None}))   # a power loss
    ledger.record("floorwatch/s/n1/alarm", b"{}")                             # not the ledger's business
    ledger.record("floorwatch/s/n1/telemetry", b"{not json")
    ledger.record("floorwatch/s/n1/telemetry", json.dumps({"boot": 4, "seq": -1, "r": [{}]}))
    ledger.record("floorwatch/s/n1/telemetry", json.dumps({"boot": 4, "seq": 1 << 40, "r": [{}]}))
    books = ledger.report()
    row = books["devices"]["n1"]
    assert row["delivered"] == 4 and row["duplicates"] == 2        # 0, 1, 2 of boot 3; 0 of boot 4
    assert row["dropped_counted"]["reset"] == 2                    # 4 and 5 of boot 3
    assert row["silently_lost"] == 2                               # 3 of boot 3 (before the range), 1 of boot 4
    assert books["messages"] == 4 and books["malformed"] == 3
    assert row["states"] == {"online": 2, "offline": 1}
    assert row["reasons"] == {"watchdog: sample": 1, "null": 1}


def test_the_final_count_of_a_boot_replaces_its_running_count():
    ledger = Ledger("127.0.0.1", 1, site="s")
    ledger.produced("n1", 1, 2, running=True)
    ledger.record("floorwatch/s/n1/telemetry", telemetry(1, 0, 4))
    assert ledger.report()["devices"]["n1"]["after_end"] == 2
    ledger.produced("n1", 1, 4)                                   # the boot ended at seq 4
    row = ledger.report()["devices"]["n1"]
    assert (row["produced"], row["delivered"], row["after_end"]) == (4, 4, 0)
    ledger.produced("n1", 1, 3)                                   # a stale, smaller count changes nothing
    assert ledger.report()["devices"]["n1"]["produced"] == 4


@pytest.mark.broker
def test_nothing_is_missed_across_a_restart_of_a_persistent_broker():
    """QoS 1 publishes keep coming while the ledger's persistent session rides out a broker restart."""
    with Mosquitto(persistent=True) as broker:
        with Ledger(broker.host, broker.port, site="ltest") as ledger:
            node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ltest-node", clean_session=False,
                               protocol=mqtt.MQTTv311)
            node.reconnect_delay_set(0.05, 0.5)
            node.connect(broker.host, broker.port)
            node.loop_start()
            try:
                sent = 0

                def publish(count):
                    nonlocal sent
                    for _ in range(count):
                        node.publish("floorwatch/ltest/n1/telemetry", telemetry(1, sent, 1), qos=1).wait_for_publish(10)
                        sent += 1

                publish(200)
                # The broker goes down with the ledger's session and queue on its disk; the node's
                # next publishes wait in paho's queue until the broker is back.
                pending = [node.publish("floorwatch/ltest/n1/telemetry", telemetry(2, i, 1), qos=1)
                           for i in range(50)]
                broker.restart()
                for info in pending:
                    info.wait_for_publish(15)
                publish(100)
                ledger.produced("n1", 1, sent)
                ledger.produced("n1", 2, 50)
                deadline = time.monotonic() + 15
                while ledger.report()["totals"]["silently_lost"] and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                node.loop_stop()
                node.disconnect()
            books = ledger.report()
            assert books["totals"]["produced"] == 350
            assert books["totals"]["silently_lost"] == 0, books["silently_lost_examples"]
            assert books["totals"]["delivered"] == 350 and books["totals"]["unexpected"] == 0
            assert ledger.connects >= 2 and books["sessions_lost"] == 0
