"""Broker password entries in mosquitto 2.0's own format, and the password file that holds them.

Written by hand rather than by running mosquitto_passwd, because the machine that provisions a fleet
need not have mosquitto installed, and the format is small and fixed:

    $7$<iterations>$<base64 salt>$<base64 hash>

7 is PBKDF2-HMAC-SHA512, the salt is 12 random bytes and the hash 64 bytes (standard base64, with
padding). tests/security/test_passwd.py holds this to mosquitto_passwd's own output and to a login
on a real broker.

Iterations: mosquitto 2.0.11's mosquitto_passwd writes 101, and the broker takes the count from
each entry. 101 is little against guessing a human password, but every password here is a random
token of at least 12 characters (provision and `broker init` make 144-bit ones), which no number
of guesses reaches, while every CONNECT costs the broker one hash: so we keep mosquitto's count.

The file is replaced atomically (a reader never sees half of it) and is owner-only (0600).
mosquitto 2.0 reads it (at start and again on SIGHUP) only after it has dropped root for its `user`
(`mosquitto` by default): started as root, it cannot open a root-owned 0600 file and exits. So the
file must belong to the user the broker runs as (`floorwatch broker run` checks; docs/security.md).
"""

import base64
import hashlib
import hmac
import os
import secrets

PBKDF2_SHA512 = "7"
SALT_BYTES = 12
DEFAULT_ITERATIONS = 101


def new_password():
    """A random password for a device or an account: 18 random bytes, 24 URL-safe characters."""
    return secrets.token_urlsafe(18)


def hash_password(password, salt=None, iterations=DEFAULT_ITERATIONS):
    """The password_file entry (the part after "user:") for `password`, with a random salt unless
    one is given (bytes)."""
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return "$%s$%d$%s$%s" % (PBKDF2_SHA512, iterations, base64.b64encode(salt).decode(),
                             base64.b64encode(digest).decode())


def verify_password(password, entry):
    """True when `entry` (from hash_password or mosquitto_passwd) is the hash of `password`."""
    try:
        _, kind, iterations, salt, digest = entry.split("$")
        if kind != PBKDF2_SHA512:
            return False
        salt = base64.b64decode(salt, validate=True)
        expected = base64.b64decode(digest, validate=True)
        iterations = int(iterations)
    except ValueError:  # a malformed entry (binascii.Error is a ValueError too)
        return False
    actual = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(actual, expected)


def read_passwd(path):
    """{user: entry} from a password file."""
    with open(path, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split(":", 1) for line in f if ":" in line)


def write_passwd(path, entries):
    """Replace the password file at `path` with {user: entry}, atomically, mode 0600."""
    for user in entries:
        if not user or ":" in user or any(c.isspace() for c in user):
            raise ValueError("%r cannot be a broker user name" % user)
    write_private(path, "".join("%s:%s\n" % item for item in sorted(entries.items())))


def write_private(path, text):
    """Write `text` to `path` atomically, readable and writable by its owner only (0600): a
    temporary file in the same directory, created 0600, then renamed over the old one. A file that
    exists keeps its owner: root rewriting the passwd of a broker that runs as `mosquitto` must not
    leave it unreadable to that broker (it would then turn every client away on reload)."""
    path = os.fspath(path)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        os.unlink(tmp)  # left by a run that died here: O_EXCL below must create the file afresh
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        _keep_owner(fd, path)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _keep_owner(fd, path):
    """Give the file open at fd the owner of the file at path, if there is one and we may."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
        os.fchown(fd, st.st_uid, st.st_gid)
