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

        def _ready_now(self):
            """[(obj, events)] for the registered objects that are ready, without waiting."""
            ready = []
            host = _host.poll()
            fds = {}
            for obj, mask in self._masks.items():
                sock = obj._sock
                fd = sock.fileno()
                if fd < 0 or not _open(obj):
                    ready.append((obj, POLLNVAL))
                    continue
                if not _reachable(obj):
                    continue
                if mask & POLLIN and getattr(sock, "pending", lambda: 0)():
                    ready.append((obj, POLLIN))  # TLS data already decrypted: the fd may look idle
                    continue
                fds[fd] = obj
                host.register(fd, _translate(mask, _TO_HOST))
            if fds:
                for fd, revents in host.poll(0):
                    events = _translate(revents, _FROM_HOST) & (self._masks[fds[fd]] | POLLERR | POLLHUP | POLLNVAL)
                    if events:
                        ready.append((fds[fd], events))
            return ready

        def _watch(self):
            """{host fd: mask} of the sockets a wait should wake for."""
            watch = {}
            for obj, mask in self._masks.items():
                fd = obj._sock.fileno()
                if fd >= 0 and _open(obj) and _reachable(obj):
                    watch[fd] = _translate(mask, _TO_HOST)
            return watch

        def poll(self, timeout=-1):
            board.checkpoint()
            ready = self._ready_now()
            if ready or timeout == 0:
                return ready
            seconds = math.inf if timeout is None or timeout < 0 else timeout / 1000
            end = board.clock.now() + seconds
            while True:
                left = end - board.clock.now()
                if left <= 0:
                    return []
                watch = self._watch()
                if watch:
                    board.sleep(left, watch)
                else:
                    board.sleep(left)
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


def _translate(mask, pairs):
    """mask rewritten bit by bit through (from, to) pairs: ours to the host's poll flags or back."""
    out = 0
    for frm, to in pairs:
        if mask & frm:
            out |= to
    return out
