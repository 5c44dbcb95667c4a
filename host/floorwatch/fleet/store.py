"""The fleet monitor's SQLite store: every telemetry record once, every alert, each device's latest state.

sqlite3 (stdlib) in WAL mode, so `floorwatch fleet export` can read while the monitor writes. One
connection, shared by threads under one lock (check_same_thread=False).

Tables:
- records (device, boot, seq) PRIMARY KEY, site, up, t_ms, record: the record JSON in the host's
  view, as floorwatch.contract.records decodes it from the message ({"up", "t", "v", "dt"}, rms and
  pk in g, cf derived; a node's positional record means nothing without its message's cols);
  t_ms = t0 + up (Unix ms), NULL while the node had no wall time. INSERT OR IGNORE keeps the first
  copy of a record, however often it arrives.
- events: time (epoch s), device, site, kind, event (the whole alert or event dict as JSON).
- devices: device PRIMARY KEY, site, state (DeviceState.as_dict() as JSON).

Writes never commit: a commit per message would cap the monitor at a few hundred messages a
second (each is an fsync). The caller commits in batches: `maybe_commit(now)` every message (and
on its clock tick), or `commit()` at the end.
"""

import json
import sqlite3
import threading

from .. import contract

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    device TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    site TEXT NOT NULL, up INTEGER NOT NULL, t_ms INTEGER, record TEXT NOT NULL,
    PRIMARY KEY (device, boot, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    time REAL NOT NULL, device TEXT, site TEXT, kind TEXT NOT NULL, event TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY, site TEXT NOT NULL, state TEXT NOT NULL);
"""


_compact = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps with options builds one a call

class StoreError(ValueError):
    """The database cannot be opened or read as a fleet store; str() is one line."""


class Store:
    def __init__(self, path, readonly=False):
        self.path = str(path)
        self.pending = 0  # rows written since the last commit
        self._last_commit = None
        self._lock = threading.Lock()
        try:
            if readonly:
                uri = "file:%s?mode=ro" % self.path.replace("?", "%3f").replace("#", "%23")
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
                self._db.execute("SELECT 1 FROM records LIMIT 1")  # is it a fleet store at all?
            else:
                self._db = sqlite3.connect(self.path, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable up to the last checkpoint
                self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: not a usable fleet store ({exc})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- writing ---------------------------------------------------------------------------------
    def add_telemetry(self, site, device, body):
        """Store the records of one validated telemetry message; returns how many were new."""
        boot, seq, t0 = body["boot"], body["seq"], body.get("t0")
        rows = [(device, boot, seq + i, site, rec["up"], None if t0 is None else t0 + rec["up"],
                 _compact(rec))
                for i, rec in enumerate(contract.records(body))]
        with self._lock:
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            new = self._db.total_changes - before
            self.pending += new
        return new

    def add_event(self, event):
        """Keep an alert (or any dict with time, kind and optionally device, site)."""
        with self._lock:
            self._db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                             (event["time"], event.get("device"), event.get("site"), event["kind"],
                              json.dumps(event, separators=(",", ":"), default=str)))
            self.pending += 1

    def save_device(self, state):
        """Keep the latest state of one device (a DeviceState.as_dict())."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO devices VALUES (?, ?, ?)",
                             (state["device_id"], state["site"],
                              json.dumps(state, separators=(",", ":"), default=str)))
            self.pending += 1

    def commit(self, now=None):
        with self._lock:
            self._db.commit()
            self.pending = 0
            self._last_commit = now

    def maybe_commit(self, now, every=2000, seconds=1.0):
        """Commit when `every` rows wait or `seconds` passed since the last commit; True if it did."""
        if self._last_commit is None:
            self._last_commit = now
        if self.pending and (self.pending >= every or now - self._last_commit >= seconds):
            self.commit(now)
            return True
        return False

    def close(self):
        with self._lock:
            if self._db is not None:
                self._db.commit()
                self._db.close()
                self._db = None

    # --- reading ---------------------------------------------------------------------------------
    def records(self, since_ms=None, device=None, chunk=5000):
        """Stored records oldest first per device: (device, site, boot, seq, up, t_ms, record dict).

        since_ms keeps records whose wall time t_ms is known and at least since_ms. Read in chunks
        (keyset paging on the primary key), so exporting millions of records needs little memory
        and never holds the lock long.
        """
        where, args = ["(device, boot, seq) > (?, ?, ?)"], []
        if since_ms is not None:
            where.append("t_ms >= ?")
            args.append(since_ms)
        if device is not None:  # a plain equality, so the primary key index finds the device
            where.append("device = ?")
            args.append(device)
        sql = ("SELECT device, site, boot, seq, up, t_ms, record FROM records WHERE %s"
               " ORDER BY device, boot, seq LIMIT ?" % " AND ".join(where))
        after = ("", -1, -1)
        while True:
            with self._lock:
                rows = self._read(sql, after + tuple(args) + (chunk,))
            for dev, site, boot, seq, up, t_ms, record in rows:
                yield dev, site, boot, seq, up, t_ms, json.loads(record)
            if len(rows) < chunk:
                return
            after = rows[-1][0], rows[-1][2], rows[-1][3]

    def events(self, since=None, device=None):
        """Stored events (dicts) in time order; since in epoch s."""
        sql = "SELECT event FROM events WHERE (? IS NULL OR time >= ?) AND (? IS NULL OR device = ?) ORDER BY time"
        with self._lock:
            return [json.loads(e) for (e,) in self._read(sql, (since, since, device, device))]

    def devices(self):
        """The latest saved state of every device (dicts), sorted by site and device."""
        with self._lock:
            return [json.loads(s) for (s,) in self._read("SELECT state FROM devices ORDER BY site, device", ())]

    def _read(self, sql, args):
        try:
            # fetchall under the lock: a cursor must not interleave with a writer's statements.
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read it ({exc})") from None
