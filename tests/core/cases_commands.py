"""Cases for node.commands against docs/contract.md (cmd and ack); MicroPython subset (CPython and the VM)."""
import json

from node import commands, payload


def _load(b):
    assert type(b) is bytes, type(b)
    return json.loads(b.decode())


def _cmd_error(msg):
    try:
        commands.parse_command(msg)
    except commands.CommandError as e:
        return e
    raise AssertionError("accepted: " + repr(msg))


def test_reboot_and_resume_take_no_arguments():
    assert commands.parse_command('{"id": "r1", "cmd": "reboot"}') == ("r1", "reboot", {})
    assert commands.parse_command('{"id": "r2", "cmd": "resume"}') == ("r2", "resume", {})
    try:
        commands.parse_command('{"id": "r3", "cmd": "reboot", "delay": "5"}')
    except commands.CommandError as exc:
        assert "delay" in str(exc)
        return
    raise AssertionError("reboot accepted an argument")


def test_parse_command():
    assert commands.parse_command(b'{"id": "c-17", "cmd": "ping"}') == ("c-17", "ping", {})
    assert commands.parse_command('{"id": "c-18", "cmd": "diag"}') == ("c-18", "diag", {})
    assert commands.parse_command(b'{"id": "a", "cmd": "ack-alarm"}') == ("a", "ack-alarm", {})
    assert commands.parse_command(b'{"id": "a", "cmd": "ack-alarm", "metric": "bearing"}') == (
        "a", "ack-alarm", {"metric": "bearing"})
    assert commands.parse_command(b'{"id": "a", "cmd": "ack-alarm", "metric": "bearing.early"}')[2] == {
        "metric": "bearing.early"}
    assert commands.parse_command(b'{"id": "r", "cmd": "rebaseline", "sensor": "motor"}') == (
        "r", "rebaseline", {"sensor": "motor"})
    long_id = "Az09_.:-" * 8
    assert commands.parse_command(b'{"id": "' + long_id.encode() + b'", "cmd": "ping"}')[0] == long_id
    # Any JSON whitespace, and a bytearray (what a socket may give) or memoryview.
    assert commands.parse_command(bytearray(b' \r\n\t{ "cmd" :"ping" ,"id":"x"}\n')) == ("x", "ping", {})
    assert commands.parse_command(memoryview(b'{"id":"x","cmd":"ping"}')) == ("x", "ping", {})


def test_command_errors():
    cases = (
        (b"ping", None, None, "not valid JSON"),
        (b'{"id": "c-1", "cmd": "ping"', None, None, "not valid JSON"),
        (b'\xff\xfe{"id": "c"}', None, None, "not valid JSON"),
        (b'{"id": "c-1", "cmd": "\xff"}', None, None, "not valid JSON"),
        (b'["c-1", "ping"]', None, None, "not a JSON object"),
        (b'"ping"', None, None, "not a JSON object"),
        (b'{"cmd": "ping"}', None, None, "id must be 1..64 characters of A-Z a-z 0-9 _ . : -"),
        (b'{"id": "", "cmd": "ping"}', None, None, "id must be"),
        (b'{"id": 17, "cmd": "ping"}', None, None, "id must be"),
        (b'{"id": "c 1", "cmd": "ping"}', None, None, "id must be"),
        (b'{"id": "c\\n1", "cmd": "ping"}', None, None, "id must be"),
        (b'{"id": "\\u00e9", "cmd": "ping"}', None, None, "id must be"),
        (b'{"id": "' + b"i" * 65 + b'", "cmd": "ping"}', None, None, "id must be"),
        (b'{"id": "c-2"}', "c-2", None, "missing cmd"),
        (b'{"id": "c-3", "cmd": 5}', "c-3", None, "cmd is not a string"),
        (b'{"id": "c-19", "cmd": "frobnicate"}', "c-19", None, "unknown command 'frobnicate'"),
        (b'{"id": "c-4", "cmd": "ping", "verbose": true}', "c-4", "ping", "ping takes no argument 'verbose'"),
        (b'{"id": "c-5", "cmd": "ack-alarm", "metric": 5}', "c-5", "ack-alarm", "ack-alarm: metric: 5 is not a string"),
        (b'{"id": "c-5", "cmd": "ack-alarm", "metric": "Bearing"}', "c-5", "ack-alarm",
         "ack-alarm: metric: 'Bearing' is not a metric name (a sensor name, or <sensor>.rms|pk|cf|kurt|vel|rate|rise|early)"),
        (b'{"id": "c-5", "cmd": "ack-alarm", "metric": "motor.rms.x"}', "c-5", "ack-alarm", "ack-alarm: metric: 'motor.rms.x' is not"),
        (b'{"id": "c-5", "cmd": "ack-alarm", "metric": "a234567890123456a"}', "c-5", "ack-alarm", "ack-alarm: metric: "),
        (b'{"id": "c-6", "cmd": "rebaseline", "metric": "x"}', "c-6", "rebaseline", "rebaseline takes no argument 'metric'"),
        (b'{"id": "c-6", "cmd": "rebaseline", "sensor": "motor.rms"}', "c-6", "rebaseline",
         "rebaseline: sensor: 'motor.rms' is not a valid name (1..16 of a-z 0-9 _ -, starting with a letter or digit)"),
        (b'{"id": "c-7", "cmd": "set", "wifi": {"ssid": "x"}}', "c-7", "set", "set takes no argument 'wifi'"),
        (b'{"id": "c-8", "cmd": "set", "intervals": "5"}', "c-8", "set", "set: intervals: '5' is not an object"),
        (b'{"id": "c-9", "cmd": "set", "thresholds": [1]}', "c-9", "set", "set: thresholds: [1] is not an object"),
        (b'{"id": "c-10", "cmd": "set", "thresholds": null}', "c-10", "set", "set: thresholds: null is not an object"),
        (b'{"id": "c-11", "cmd": "identify", "s": "10"}', "c-11", "identify", "identify: s: '10' is not an integer"),
        (b'{"id": "c-12", "cmd": "identify", "s": 2.5}', "c-12", "identify", "identify: s: 2.5 is not an integer"),
        (b'{"id": "c-12", "cmd": "identify", "s": 7.0}', "c-12", "identify", "identify: s: 7.0 is not an integer"),
        (b'{"id": "c-13", "cmd": "identify", "s": true}', "c-13", "identify", "identify: s: true is not an integer"),
        (b'{"id": "c-13", "cmd": "identify", "s": -1}', "c-13", "identify", "identify: s: -1 is out of range 0..3600"),
        (b'{"id": "c-13", "cmd": "identify", "s": 3601}', "c-13", "identify", "identify: s: 3601 is out of range 0..3600"),
        (b'{"id": "c-14", "cmd": "identify", "pin": 2}', "c-14", "identify", "identify takes no argument 'pin'"),
        (b'{"id": "c-15", "cmd": "ack-alarm", "metric": {"a": 1}}', "c-15", "ack-alarm", "ack-alarm: metric: {\"a\": 1} is not a string"),
    )
    for msg, cmd_id, cmd, words in cases:
        e = _cmd_error(msg)
        assert isinstance(e, ValueError)
        assert (e.cmd_id, e.cmd) == (cmd_id, cmd), (msg, e.cmd_id, e.cmd)
        assert str(e).startswith(words), (msg, str(e))
    assert str(_cmd_error(b'{"id": "c-19", "cmd": "frobnicate"}')) == "unknown command 'frobnicate'"


def test_only_strict_json_is_read():
    # MicroPython's json.loads takes all of these; the contract (CPython's json) takes none.
    for msg in (b'{"id":"a","cmd":"ping",}', b'{"id":"a" "cmd":"ping"}', b'{"id":"a","cmd":"ping"} x',
                b'{"id":"a","cmd":"set","intervals":{"temp_s":05}}', b'{"id":"a","cmd":"set","intervals":{"temp_s":5.}}',
                b'{"id":"a","cmd":"set","intervals":{"temp_s":5 6}}', b'{"id":"a","cmd":"set","intervals":{]}',
                b'{"id":"a","cmd":"set","intervals":{"temp_s":NaN}}', b'{"id":"a","cmd":"set","intervals":{"temp_s":-Infinity}}',
                b'{"id":"a","cmd":"ping","x":"\\x41"}', b'{"id":"a","cmd":"ping","x":"\\u12G4"}', b'{"id":"a","cmd":"ping","x":"\t"}',
                b"{'id':'a','cmd':'ping'}", b'{id:"a",cmd:"ping"}', b'\xef\xbb\xbf{"id":"a","cmd":"ping"}', b"", b"  ",
                b'{"id":"a","cmd":"ping"}{}', b'{"id":"a","cmd":"set","intervals":{"temp_s":+5}}', b'{"id":"a","cmd":tru}'):
        assert str(_cmd_error(msg)).startswith("not valid JSON"), msg
    assert str(_cmd_error(b'{"id":"a","cmd":"ping",}')) == "not valid JSON (at byte 23)"
    # Every JSON number form is read.
    for number in (b"5", b"5.0e0", b"5.25", b"5e2", b"5E+2", b"50e-1", b"0.5e1"):
        msg = b'{"id":"a","cmd":"set","intervals":{"temp_s":' + number + b"}}"
        assert commands.parse_command(msg)[2]["intervals"]["temp_s"] == json.loads(number)
    assert commands.parse_command(b'{"id":"a\\u002d1","cmd":"ping"}')[0] == "a-1"


def test_duplicate_keys_are_refused():
    for msg in (b'{"id":"a","cmd":"ping","cmd":"reboot"}', b'{"id":"a","id":"b","cmd":"ping"}',
                b'{"id":"a","cmd":"set","intervals":{"temp_s":5,"temp_s":0.5}}',
                b'{"id":"a","cmd":"set","thresholds":{"b":{"warn":1}},"thresholds":{"b":{"warn":2}}}'):
        assert str(_cmd_error(msg)) == "not valid JSON (a duplicate key)", msg


def test_nesting_is_bounded_before_parsing():
    assert str(_cmd_error(b"[" * 250 + b"]" * 250)) == "nested deeper than 4 levels"
    assert str(_cmd_error(b'{"id":"a","cmd":"set","thresholds":{"b":{"warn":[[1]]}}}')) == "nested deeper than 4 levels"
    # Four levels parse and are then judged as usual; brackets inside strings do not count.
    e = _cmd_error(b'{"id":"a","cmd":"set","thresholds":{"b":{"warn":[1]}}}')
    assert str(e).startswith("set: thresholds.b.warn: [1] is not a number"), str(e)
    e = _cmd_error(b'{"id":"a","cmd":"ping","[[[[[[":"{{{{{{"}')
    assert str(e).startswith("ping takes no argument '[[[[[['"), str(e)


def test_command_size_limit():
    head = b'{"id": "c-1", "cmd": "set", "thresholds": {"bearing": {"warn": 1'
    exact = head + b"0" * (512 - len(head) - 3) + b"}}}"
    assert len(exact) == 512
    assert commands.parse_command(exact)[:2] == ("c-1", "set")
    over = head + b"0" * (513 - len(head) - 3) + b"}}}"
    e = _cmd_error(over)
    assert (e.cmd_id, e.cmd) == (None, None) and str(e) == "command is 513 bytes, at most 512 allowed"
    # What the link delivers for a command it discarded unread: its size.
    e = _cmd_error(70000)
    assert (e.cmd_id, e.cmd) == (None, None) and str(e) == "command is 70000 bytes, at most 512 allowed"


def test_errors_quote_little_of_what_was_sent():
    long = "x" * 400
    for msg in ('{"id":"a","cmd":"%s"}' % long, '{"id":"a","cmd":"ping","%s":1}' % long,
                '{"id":"a","cmd":"ack-alarm","metric":"%s"}' % long,
                '{"id":"a","cmd":"set","intervals":{"%s":1}}' % long,
                '{"id":"a","cmd":"set","thresholds":{"%s":1}}' % long,
                '{"id":"a","cmd":"set","thresholds":{"b":{"warn":"%s"}}}' % long):
        text = str(_cmd_error(msg))
        assert "x" * 40 not in text and len(text) < 160 and "\n" not in text, text


def test_command_error_answer_round_trip():
    e = _cmd_error(b'{"id": "c-19", "cmd": "frobnicate"}')
    doc = _load(payload.ack(e.cmd_id, e.cmd, False, error=str(e)))
    assert doc == {"id": "c-19", "cmd": None, "ok": False, "error": "unknown command 'frobnicate'"}


def test_set_takes_merge_patches_of_intervals_and_thresholds():
    msg = b'{"id":"c1","cmd":"set","intervals":{"temp_s":5},"thresholds":{"bearing":{"warn":75}}}'
    assert commands.parse_command(msg) == (
        "c1", "set", {"intervals": {"temp_s": 5}, "thresholds": {"bearing": {"warn": 75}}})
    assert commands.parse_command(b'{"id":"c2","cmd":"set","thresholds":{"bearing":null}}') == (
        "c2", "set", {"thresholds": {"bearing": None}})
    every = {"warn": -1.5, "alarm": 10 ** 30, "deadband": 0, "on_delay_s": 86400, "off_delay_s": 0.5, "latch": True,
             "realarm_s": 604800, "relative": False, "early_s": 1}
    msg = json.dumps({"id": "c3", "cmd": "set", "thresholds": {"motor.vel": every, "probe.rise": {"warn": None}},
                      "intervals": {"temp_s": 1, "vib_s": 3600, "diag_s": None}})
    assert commands.parse_command(msg)[2]["thresholds"]["motor.vel"] == every
    assert commands.parse_command(b'{"id":"c4","cmd":"set","intervals":{}}')[2] == {"intervals": {}}


def test_set_refuses_what_config_json_would():
    for patch, words in (
        ({}, "set: nothing to change: give intervals or thresholds"),
        ({"intervals": {"temp_s": 0.5}}, "set: intervals.temp_s: 0.5 is out of range 1..3600"),
        ({"intervals": {"diag_s": 9}}, "set: intervals.diag_s: 9 is out of range 10..86400"),
        ({"intervals": {"vib_s": True}}, "set: intervals.vib_s: true is not a number"),
        ({"intervals": {"vib_s": "5"}}, "set: intervals.vib_s: '5' is not a number"),
        ({"intervals": {"temp": 5}}, "set: intervals: unknown key 'temp' (it takes temp_s, vib_s, diag_s, send_s)"),
        ({"thresholds": {"bearing": 75}}, "set: thresholds.bearing: 75 is not an object"),
        ({"thresholds": {"bearing": {"warn": "75"}}}, "set: thresholds.bearing.warn: '75' is not a number or null"),
        ({"thresholds": {"bearing": {"deadband": -1}}}, "set: thresholds.bearing.deadband: -1 is below 0"),
        ({"thresholds": {"bearing": {"latch": 1}}}, "set: thresholds.bearing.latch: 1 is not true or false"),
        ({"thresholds": {"bearing": {"early_s": 0}}}, "set: thresholds.bearing.early_s: 0 is out of range 1..604800"),
        ({"thresholds": {"bearing": {"realarm_s": 604801}}}, "set: thresholds.bearing.realarm_s: 604801 is out of range"),
        ({"thresholds": {"bearing": {"low": True}}}, "set: thresholds.bearing: unknown key 'low' (it takes warn, alarm, "),
        ({"thresholds": {"bearing.early": {"warn": 1}}}, "set: thresholds: 'bearing.early' is not a metric name"),
        ({"thresholds": {"": {"warn": 1}}}, "set: thresholds: '' is not a metric name"),
    ):
        msg = json.dumps(dict({"id": "s1", "cmd": "set"}, **patch))
        e = _cmd_error(msg)
        assert (e.cmd_id, e.cmd) == ("s1", "set") and str(e).startswith(words), (patch, str(e))


def test_a_set_of_several_thresholds_fits_the_size_limit():
    limits = {}
    for metric in ("bearing", "winding", "motor.rms", "motor.vel", "motor.kurt"):
        limits[metric] = {"warn": 80.5, "alarm": 90.5, "deadband": 2, "on_delay_s": 60}
    msg = json.dumps({"id": "c-123456", "cmd": "set", "intervals": {"temp_s": 5, "vib_s": 20, "diag_s": 60},
                      "thresholds": limits})
    assert len(msg) <= commands.MAX_COMMAND, len(msg)
    assert commands.parse_command(msg)[2]["thresholds"] == limits


def test_identify_takes_seconds():
    assert commands.parse_command(b'{"id":"i1","cmd":"identify"}') == ("i1", "identify", {})
    assert commands.parse_command(b'{"id":"i2","cmd":"identify","s":10}') == ("i2", "identify", {"s": 10})
    assert commands.parse_command(b'{"id":"i3","cmd":"identify","s":0}')[2] == {"s": 0}
    assert commands.parse_command(b'{"id":"i4","cmd":"identify","s":3600}')[2] == {"s": 3600}


def test_commands_lists_each_argument_with_its_json_type():
    assert sorted(commands.COMMANDS) == ["ack-alarm", "diag", "identify", "ping", "rebaseline", "reboot", "resume", "set"]
    good = {str: '"bearing"', dict: '{"temp_s": 5}', int: "1"}
    for cmd in commands.COMMANDS:
        for arg in commands.COMMANDS[cmd]:
            value = good[commands.COMMANDS[cmd][arg]]
            if cmd == "set" and arg == "thresholds":
                value = '{"bearing": null}'
            msg = '{"id": "t", "cmd": "%s", "%s": %s}' % (cmd, arg, value)
            assert commands.parse_command(msg)[2] == {arg: json.loads(value)}, msg
            e = _cmd_error('{"id": "t", "cmd": "%s", "%s": []}' % (cmd, arg))
            assert str(e).startswith("%s: %s: [] is not " % (cmd, arg)), str(e)
