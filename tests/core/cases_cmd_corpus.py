"""The command corpus (cmd_corpus.json) through node.commands.parse_command, on CPython and in the
MicroPython VM: every payload gets the verdict and error-line prefix recorded for it.

The corpus holds hand-picked payloads and ones the fuzz strategies found (tests/security/
test_cmd_fuzz.py writes it; tests/security/test_cmd_contract.py checks that its verdicts are still
the contract's, so it cannot go stale). Run here, it shows that MicroPython's json and str do not
change a verdict. Entries: {"text": ...} or {"hex": ...} (bytes that are not printable text) or
{"size": n} (a command the link discarded unread), with "ok" and, when false, "error".
"""
import json
from binascii import unhexlify

from node import commands

DATA = None  # set by the runner: a directory holding FILES


def _corpus_text():
    try:  # CPython (the runner), which hands the file to the VM
        import os.path
        with open(os.path.join(os.path.dirname(__file__), "cmd_corpus.json")) as f:
            return f.read()
    except (ImportError, AttributeError, NameError, OSError):  # in the VM: the runner mounted it
        return None


FILES = {"cmd_corpus.json": _corpus_text()}


def _corpus():
    with open(DATA + "/cmd_corpus.json") as f:
        return json.load(f)


def _message(entry):
    if "size" in entry:
        return entry["size"]
    if "hex" in entry:
        return unhexlify(entry["hex"])
    return entry["text"].encode()


def test_every_corpus_payload_gets_its_recorded_verdict():
    entries = _corpus()
    assert len(entries) >= 300, len(entries)
    wrong = []
    accepted = 0
    for i in range(len(entries)):
        entry = entries[i]
        try:
            commands.parse_command(_message(entry))
            got = None
        except commands.CommandError as e:
            got = str(e)
        if entry["ok"]:
            accepted += 1
            if got is not None:
                wrong.append("%d: rejected (%s)" % (i, got))
        elif got is None or not got.startswith(entry["error"]):
            wrong.append("%d: %s, expected %s" % (i, "accepted" if got is None else repr(got), repr(entry["error"])))
    assert not wrong, "%d of %d: %s" % (len(wrong), len(entries), "; ".join(wrong[:5]))
    assert 0 < accepted < len(entries)
