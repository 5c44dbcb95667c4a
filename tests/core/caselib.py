"""Helpers shared by the case files; the MicroPython subset, like them (mounted into the VM too)."""


def lcg_noise(n, amp, seed=1):
    """n deterministic values in [-amp, amp) from a small LCG (MicroPython's random differs)."""
    out = []
    x = seed
    for _ in range(n):
        x = (x * 75 + 74) % 65537
        out.append((x / 65537 * 2 - 1) * amp)
    return out


def fresh_path(data, name):
    """data/name with no file, .tmp or directory of that name left from an earlier case."""
    import os

    p = data + "/" + name
    for q in (p, p + ".tmp"):
        for rm in (os.remove, os.rmdir):
            try:
                rm(q)
            except OSError:
                pass
    return p


def exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def read_text(path):
    with open(path) as f:
        return f.read()
