"""`select` (uselect) for one board: poll() over the board's fake sockets, waiting in board time.

Same surface as MicroPython's module: `poll()` objects with register/unregister/modify/poll/ipoll,
the POLLIN/POLLOUT/POLLERR/POLLHUP constants, and `select()`. As on the ESP32 port, POLLERR and
POLLHUP are reported whether asked for or not, a closed socket reports POLLNVAL (0x20), and
timeouts are in milliseconds (negative: wait forever).

A wait is a board sleep (a power cut, a reset or the watchdog interrupts it) that also ends when a
registered socket becomes ready on the host. Under a VirtualClock the board counts as waiting until
its timeout meanwhile, so data that arrives wakes it at whatever board time it then is. A socket
whose WiFi link is down, or whose peer is unreachable (board.broker_unreachable), never becomes
ready: nothing reaches the board.
"""

import errno
import math
import select as _host

from . import new_module

POLLIN, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x01, 0x04, 0x08, 0x10, 0x20
_TO_HOST = ((POLLIN, _host.POLLIN), (POLLOUT, _host.POLLOUT))
_FROM_HOST = ((_host.POLLIN, POLLIN), (_host.POLLOUT, POLLOUT), (_host.POLLERR, POLLERR),
              (_host.POLLHUP, POLLHUP), (_host.POLLNVAL, POLLNVAL))


def module(board):
    def _check_stream(obj):
        if getattr(obj, "_sock", None) is None:
            raise TypeError("object with stream.ioctl required")

    def _open(obj):
        return obj in board.sockets  # closed, or aborted by a power cut or reset, it is not

    def _reachable(obj):
        return board.link_up() and not obj._vanishing()

    class Poll:
        def __init__(self):
            self._masks = {}  # fake socket -> event mask

        def register(self, obj, eventmask=POLLIN | POLLOUT):
            _check_stream(obj)
            self._masks[obj] = eventmask

        def unregister(self, obj):
            self._masks.pop(obj, None)

        def modify(self, obj, eventmask):
            if obj not in self._masks:
                raise OSError(errno.ENOENT)
            self._masks[obj] = eventmask

        def _ready_now(self, host=True):
            """[(obj, events)] for the registered objects that are ready, without waiting. Without
            `host`, only what needs no system call: closed sockets, and data the board already
            holds (read ahead, or decrypted by TLS) that the host descriptor does not show."""
            ready = []
            poller = _host.poll() if host else None
            fds = {}
            for obj, mask in self._masks.items():
                sock = obj._sock
                fd = sock.fileno()
                if fd < 0 or not _open(obj):
                    ready.append((obj, POLLNVAL))
                    continue
                if not _reachable(obj):
                    continue
                if mask & POLLIN and (obj._pending() or getattr(sock, "pending", _nothing)()):
                    ready.append((obj, POLLIN))  # already on the board: the fd may look idle
                    continue
                if host:
                    fds[fd] = obj
                    poller.register(fd, _translate(mask, _TO_HOST))
            if fds:
                ready.extend(self._events(poller.poll(0), fds))
            return ready

        def _events(self, host_events, fds):
            """[(obj, events)] from the host's [(fd, revents)] for the objects of fds {fd: obj}."""
            ready = []
            for fd, revents in host_events:
                obj = fds.get(fd)
                if obj is None or obj not in self._masks:
                    continue
                events = _translate(revents, _FROM_HOST) & (self._masks[obj] | POLLERR | POLLHUP | POLLNVAL)
                if events:
                    ready.append((obj, events))
            return ready

        def _watch(self):
            """({host fd: mask}, {host fd: obj}) of the sockets a wait should wake for."""
            watch, fds = {}, {}
            for obj, mask in self._masks.items():
                fd = obj._sock.fileno()
                if fd >= 0 and _open(obj) and _reachable(obj):
                    watch[fd] = _translate(mask, _TO_HOST)
                    fds[fd] = obj
            return watch, fds

        def poll(self, timeout=-1):
            board.checkpoint()
            if timeout == 0:
                return self._ready_now()
            # What is ready already without a system call; the wait's own poll sees the rest at
            # once (every system call lets the interpreter lock go: a wait that data ends costs one
            # host poll, one that times out two).
            ready = self._ready_now(host=False)
            if ready:
                return ready
            seconds = math.inf if timeout is None or timeout < 0 else timeout / 1000
            end = board.clock.now() + seconds
            while True:
                left = end - board.clock.now()
                if left <= 0:
                    return []
                watch, fds = self._watch()
                woke = board.sleep(left, watch) if watch else board.sleep(left)
                ready = [(obj, events) for obj, events in self._events(woke, fds) if _open(obj) and _reachable(obj)]
                if not woke:  # time is up, or the wait did not poll at all (a virtual clock's jump)
                    ready = self._ready_now()
                if ready:
                    return ready

        def ipoll(self, timeout=-1, flags=0):
            ready = self.poll(timeout)
            if flags & 1:  # one-shot: a reported object is not polled again until modify()
                for obj, _events in ready:
                    self._masks[obj] = 0
            return iter(ready)

    def select(rlist, wlist, xlist, timeout=None):
        poller = Poll()
        for obj in rlist:
            poller.register(obj, POLLIN)
        for obj in wlist:
            poller.register(obj, poller._masks.get(obj, 0) | POLLOUT)
        for obj in xlist:
            poller.register(obj, poller._masks.get(obj, 0))
        ready = poller.poll(-1 if timeout is None else int(timeout * 1000))
        return ([o for o, e in ready if o in rlist and e & (POLLIN | POLLHUP | POLLERR)],
                [o for o, e in ready if o in wlist and e & (POLLOUT | POLLHUP | POLLERR)],
                [o for o, e in ready if o in xlist and e & (POLLERR | POLLHUP | POLLNVAL)])

    return new_module(
        "select", __doc__, poll=Poll, select=select, POLLIN=POLLIN, POLLOUT=POLLOUT,
        POLLERR=POLLERR, POLLHUP=POLLHUP,
    )


def _nothing():
    return 0


def _translate(mask, pairs):
    """mask rewritten bit by bit through (from, to) pairs: ours to the host's poll flags or back."""
    out = 0
    for frm, to in pairs:
        if mask & frm:
            out |= to
    return out
