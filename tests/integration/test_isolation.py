"""Boards in one process share nothing: each has its own modules, flash and NVS."""

from floorwatch.sim.board import Board


def test_each_board_gets_its_own_module_objects(tmp_path):
    a = Board("iso-a", seed=1, flash_dir=tmp_path / "a")
    b = Board("iso-b", seed=2, flash_dir=tmp_path / "b")
    for name in ("machine", "time", "network", "esp32", "node.payload"):
        assert a.runtime.import_module(name) is not b.runtime.import_module(name), name
    a.runtime.import_module("node.payload").KINDS = ("changed",)
    assert b.runtime.import_module("node.payload").KINDS[0] == "status"
    assert a.runtime.import_module("utime") is a.runtime.import_module("time")


def test_flash_and_nvs_are_per_board(tmp_path):
    a = Board("iso-a", seed=1, flash_dir=tmp_path / "a")
    b = Board("iso-b", seed=2, flash_dir=tmp_path / "b")
    with a.runtime._open("note.txt", "w") as f:
        f.write("only on a")
    assert a.runtime.import_module("os").listdir("/") == ["note.txt"]
    assert b.runtime.import_module("os").listdir("/") == []
    nvs = a.runtime.import_module("esp32").NVS("floorwatch")
    nvs.set_i32("boot", 41)
    nvs.commit()
    try:
        b.runtime.import_module("esp32").NVS("floorwatch").get_i32("boot")
        raise AssertionError("board b sees board a's NVS")
    except OSError:
        pass
    assert a.runtime.import_module("esp32").NVS("floorwatch").get_i32("boot") == 41


def test_firmware_cannot_import_cpython_only_modules(tmp_path):
    board = Board("iso-c", seed=3, flash_dir=tmp_path)
    for name in ("dataclasses", "typing", "threading", "subprocess"):
        try:
            board.runtime.import_module(name)
        except ImportError:
            continue
        raise AssertionError("%s imported on a simulated board" % name)
