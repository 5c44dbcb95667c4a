"""cmd.json, the node's command table and the committed corpus say the same thing.

The fuzz test (test_cmd_fuzz.py) compares verdicts on generated payloads; this file compares the
tables themselves: every command, argument, type, range and name rule in cmd.json against
node/commands.py and the node/config.py tables it reuses, so a range changed on one side fails here
by name. It also replays tests/core/cmd_corpus.json against the contract (the same corpus runs in
the MicroPython VM: tests/core/cases_cmd_corpus.py), so the corpus cannot go stale, and checks the
answers docs/contract.md shows.
"""

import json
import re
from pathlib import Path

import pytest

from floorwatch import contract, firmware_import

commands = firmware_import.load("node.commands")
payload = firmware_import.load("node.payload")
config = commands.config
ROOT = Path(__file__).resolve().parents[2]
CMD = contract.schema("cmd")
DEFS = CMD["$defs"]
JSON_TYPES = {config._num: ["number", "null"], config._num_or_null: ["number", "null"], config._bool: ["boolean", "null"],
              config._int: "integer"}


def then_of(command):
    """The `then` schema cmd.json applies to one command."""
    found = [rule["then"] for rule in CMD["allOf"]
             if command in rule["if"]["properties"]["cmd"].get("enum", [rule["if"]["properties"]["cmd"].get("const")])]
    assert len(found) == 1, command
    return found[0]


def test_the_same_commands():
    assert CMD["properties"]["cmd"]["enum"] == list(commands.COMMANDS)


@pytest.mark.parametrize("command", list(commands.COMMANDS))
def test_the_same_arguments(command):
    then = then_of(command)
    assert then["additionalProperties"] is False
    assert sorted(then["properties"]) == sorted(["id", "cmd"] + list(commands.COMMANDS[command]))
    needs_one = command in commands._NEEDS_ARGUMENT
    assert ("anyOf" in then) == needs_one
    if needs_one:
        assert [branch["required"] for branch in then["anyOf"]] == [[a] for a in commands.COMMANDS[command]]


def test_the_same_id_rule():
    rule = CMD["properties"]["id"]
    assert rule["minLength"] == 1 and rule["maxLength"] == commands.MAX_ID
    assert rule["pattern"] == "^[A-Za-z0-9%s]+$" % commands._ID_PUNCTUATION  # "-" last: no range
    for good in ("c-17", "A.b:c_d-9", "x" * 64):
        assert commands._valid_id(good) and contract.validate("cmd", {"id": good, "cmd": "ping"})
    for bad in ("", "x" * 65, "a b", "a/b", "é", "a\n", 5, None):
        assert not commands._valid_id(bad)
        with pytest.raises(contract.ContractError):
            contract.validate("cmd", {"id": bad, "cmd": "ping"})


def test_identify_range():
    (name, check, limits), = commands._ARGUMENTS["identify"]
    rule = then_of("identify")["properties"][name]
    assert check is config._int and rule["type"] == "integer"
    assert (rule["minimum"], rule["maximum"]) == limits == (0, 3600)


def test_names_follow_config_json():
    sensor_len = config._SENSOR_HEAD[0][2]
    name = "[a-z0-9][a-z0-9_-]{0,%d}" % (sensor_len - 1)
    assert DEFS["sensor"]["pattern"] == "^%s$" % name
    suffixes = config.VIB_METRICS + config.TEMP_METRICS
    assert DEFS["thresholds_patch"]["propertyNames"]["pattern"] == r"^%s(\.(%s))?$" % (name, "|".join(suffixes))
    assert DEFS["alarm_metric"]["pattern"] == r"^%s(\.(%s))?$" % (name, "|".join(suffixes + ("early",)))
    # config.json's own rule for threshold names is the same.
    assert contract.schema("config")["properties"]["thresholds"]["propertyNames"]["pattern"] == \
        DEFS["thresholds_patch"]["propertyNames"]["pattern"]


@pytest.mark.parametrize("table, where", [(config._INTERVALS, "intervals_patch"), (config._LIMIT, "limits_patch")],
                         ids=["intervals", "thresholds"])
def test_set_patches_follow_the_config_tables(table, where):
    rules = DEFS[where]["properties"]
    assert DEFS[where]["additionalProperties"] is False
    assert list(rules) == [row[0] for row in table]
    for key, check, limits, _default in table:
        rule = rules[key]
        assert rule["type"] == JSON_TYPES[check], key
        low, high = limits if isinstance(limits, tuple) else (None, None)
        assert (rule.get("minimum"), rule.get("maximum")) == (low, high), key


def test_limits_read_by_the_node():
    assert commands.MAX_COMMAND == 512 and commands._MAX_DEPTH == 4
    description = CMD["description"]
    assert "512 bytes" in description and "nested at most 4 deep" in description and "no duplicate keys" in description


def test_a_lone_surrogate_is_refused_alike():
    # JSON lets a string hold "\ud800", which is no unicode character: neither side may choke on it.
    for msg in (b'{"id":"a","cmd":"ping","\\ud800":1}', b'{"id":"\\ud800","cmd":"ping"}',
                b'{"id":"a","cmd":"ack-alarm","metric":"b\\udc00"}'):
        with pytest.raises(commands.CommandError):
            commands.parse_command(msg)
        with pytest.raises(contract.ContractError):
            contract.validate("cmd", msg)


# --- the corpus ----------------------------------------------------------------------------------

CORPUS = json.loads((ROOT / "tests" / "core" / "cmd_corpus.json").read_text())


def _message(entry):
    if "size" in entry:
        return None
    return bytes.fromhex(entry["hex"]) if "hex" in entry else entry["text"].encode()


def test_the_corpus_is_a_few_hundred_payloads_of_both_verdicts():
    assert 300 <= len(CORPUS) <= 500
    accepted = sum(entry["ok"] for entry in CORPUS)
    assert 50 <= accepted <= len(CORPUS) - 100, accepted
    assert len({entry.get("error") for entry in CORPUS}) >= 40  # many kinds of error, not one


def test_the_corpus_verdicts_are_still_the_contracts():
    stale = []
    for i, entry in enumerate(CORPUS):
        msg = _message(entry)
        if msg is None:  # a command the link discarded unread: no payload for the contract
            assert not entry["ok"] and entry["size"] > commands.MAX_COMMAND
            continue
        try:
            contract.validate("cmd", msg)
            fits = len(msg) <= commands.MAX_COMMAND
        except contract.ContractError:
            fits = False
        if fits != entry["ok"]:
            stale.append((i, entry))
    assert not stale, "%d corpus entries disagree with cmd.json (rerun test_cmd_fuzz.py --write-corpus?): %s" % (
        len(stale), stale[:3])


# --- what docs/contract.md shows ---------------------------------------------------------------------

DOC_ERRORS = {  # the command behind each error answer the doc shows
    "c-25": b'{"id": "c-25", "cmd": "frobnicate"}',
    "c-26": b'{"id": "c-26", "cmd": "identify", "s": 3601}',
    "c-27": b'{"id": "c-27", "cmd": "set", "intervals": {"temp": 5}}',
    None: b'{"id": "c-28", "cmd": "ping",}',
}


def test_the_error_answers_in_the_doc_are_what_the_node_says():
    section = (ROOT / "docs" / "contract.md").read_text().split("## cmd and ack")[1].split("\n## ")[0]
    block = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    shown = [json.loads(line) for line in block.splitlines()]
    assert len(shown) == len(DOC_ERRORS)
    for ack in shown:
        try:
            commands.parse_command(DOC_ERRORS[ack["id"]])
        except commands.CommandError as exc:
            assert json.loads(payload.ack(exc.cmd_id, exc.cmd, False, error=str(exc))) == ack
        else:
            raise AssertionError("accepted: %s" % DOC_ERRORS[ack["id"]])
        contract.validate("ack", ack)


def test_diag_carries_the_command_counters():
    rule = contract.schema("diag")["properties"]["cmds"]
    assert sorted(rule["required"]) == ["dropped", "limited", "ok", "rejected"]
    d = payload.diag(1, "0.1.0", 2, "hard", [], 50000, -70, 0, 0, "bad config",
                     cmds={"ok": 1, "rejected": 2, "limited": 3, "dropped": 4})
    contract.validate("diag", json.dumps(d))
    d["cmds"]["extra"] = 1
    with pytest.raises(contract.ContractError, match=r"^cmds\.extra: unknown key$"):
        contract.validate("diag", json.dumps(d))
