"""`socket` (usocket) for one board: real host TCP sockets with MicroPython's stream semantics.

Differences from CPython that the firmware (and umqtt.simple) rely on, reproduced here:
- `read(n)` on a blocking socket returns n bytes, fewer only at end of stream (b"" at EOF);
- on a non-blocking socket `read()` returns None when nothing is waiting;
- a timeout raises OSError(ETIMEDOUT), not socket.timeout;
- `write(buf, n)` writes the first n bytes of buf, and accepts a str.
While the board's WiFi link is down nothing gets through: operations fail as the ESP32's lwIP would,
and the broker only notices through its keepalive timer, as with a real outage. While the broker is
unreachable (`board.broker_unreachable()`), TCP to it vanishes: a connect times out, and on a
connection that was open writes "succeed" and reads time out, for good (a half-open connection).

Timeouts are in board seconds. Under a ScaledClock board time runs at wall-clock speed while the
firmware waits on a socket: at any --speed, a 10 s timeout is 10 s of real network time. Under a
VirtualClock board time stands still while the board waits on its socket for up to IO_GRACE_S of
wall time (a loopback broker answers far sooner, so its replies take no board time); after that the
board lets time run (`clock.park`) and the timeout comes in board time. The host sockets send
without Nagle's delay, so umqtt's several small writes per packet do not cost a round trip each.
"""

import errno
import math
import select as _host_select
import socket as _host
import time as _host_time

from . import new_module

AF_INET, SOCK_STREAM, SOCK_DGRAM, IPPROTO_TCP = 2, 1, 2, 6
SOL_SOCKET, SO_REUSEADDR = 1, 4
CONNECT_TIMEOUT_S = 5.0  # a blocking connect's limit when the firmware set none
IO_GRACE_S = 0.2  # wall seconds a board waits on a host socket before letting virtual time run
_SLICE_S = 0.2  # longest host wait between checks for power cuts and resets
_PARKED_SLICE_S = 0.05  # once time runs: how soon the board sees its board-time deadline come
_OWN = object()  # "the socket's own timeout"


def module(board):
    def _need_link(code=errno.EHOSTUNREACH):
        board.checkpoint()
        if not board.link_up():
            raise OSError(code)

    def _park(deadline):
        park = getattr(board.clock, "park", None)
        if park is not None:
            park(deadline)

    def _unpark():
        unpark = getattr(board.clock, "unpark", None)
        if unpark is not None:
            unpark()

    def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
        _need_link()
        if board.lan_broker is not None:  # this LAN's DNS names one machine: its broker
            return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", board.lan_broker)]
        try:
            infos = _host.getaddrinfo(host, port, _host.AF_INET, _host.SOCK_STREAM)
        except _host.gaierror:
            raise OSError(-202)  # what the ESP32 port raises when DNS lookup fails
        return [(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", info[4]) for info in infos]

    class Socket:
        def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=IPPROTO_TCP):
            self._sock = _host.socket(_host.AF_INET, _host.SOCK_STREAM)
            self._sock.setsockopt(_host.IPPROTO_TCP, _host.TCP_NODELAY, 1)  # see the module docstring
            self._timeout = None  # None = blocking forever, 0 = non-blocking
            self._addr = None  # the peer, once connected
            self._dead = False  # the peer became unreachable while connected: traffic vanishes for good
            board.sockets.add(self)

        # --- lifecycle ---
        def connect(self, addr):
            _need_link()
            addr = tuple(board.lan_broker or addr)
            timeout = self._timeout if self._timeout else CONNECT_TIMEOUT_S
            if board.blackholed(addr):  # the SYNs vanish: no real connection is made
                board.sleep(timeout)
                raise OSError(errno.ETIMEDOUT)
            try:
                self._sock.setblocking(False)
                code = self._sock.connect_ex(addr)
                if code in (errno.EINPROGRESS, errno.EAGAIN):
                    if self._timeout == 0:
                        raise OSError(errno.EINPROGRESS)
                    self._wait(self._connected, timeout=timeout)
                elif code:
                    raise OSError(code, "")
            except ConnectionRefusedError:
                raise OSError(errno.ECONNREFUSED)
            except OSError as exc:
                board.checkpoint()  # a power cut closed it under us (EBADF): report the cut
                raise OSError(exc.errno or errno.ECONNABORTED)
            self._addr = addr

        def _connected(self):
            """One step of a connect in progress: done, or host timeout after the slice."""
            poller = _host_select.poll()
            poller.register(self._sock.fileno(), _host_select.POLLOUT)
            if not poller.poll(math.ceil(self._sock.gettimeout() * 1000)):
                raise _host.timeout()
            code = self._sock.getsockopt(_host.SOL_SOCKET, _host.SO_ERROR)
            if code:
                raise OSError(code, "")
            return True

        def close(self):
            board.sockets.discard(self)
            if board.link_up() and not self._unreachable():
                self._sock.close()
            else:  # the FIN cannot leave the board: the peer finds out later, as over real WiFi
                board.orphan_sockets.append(self._sock)

        def abort(self):
            """Power cut: the socket dies with the board (the peer sees the connection drop)."""
            board.sockets.discard(self)
            try:
                self._sock.close()
            except OSError:
                pass

        # --- options ---
        def setblocking(self, flag):
            self._timeout = None if flag else 0

        def settimeout(self, value):
            self._timeout = value

        def setsockopt(self, level, option, value):
            pass

        def fileno(self):
            return self._sock.fileno()

        # --- reachability (also read by the fake select) ---
        def _unreachable(self):
            return self._addr is not None and board.blackholed(self._addr)

        def _vanishing(self):
            """True once the peer became unreachable while connected; it stays so."""
            if not self._dead and self._unreachable():
                self._dead = True
            return self._dead

        # --- I/O ---
        def _wait(self, op, *args, timeout=_OWN, writing=False):
            """Run a host socket call in short slices so power cuts and resets get through.

            Under a virtual clock the board holds time still for IO_GRACE_S of wall time, then
            parks: time runs on, and the call times out when board time reaches its deadline.
            """
            timeout = self._timeout if timeout is _OWN else timeout
            deadline = None if timeout is None else board.clock.now() + timeout
            started = _host_time.monotonic()
            parked = False
            try:
                while True:
                    _need_link(errno.ECONNABORTED)
                    if self._vanishing():
                        return self._vanish(args[0] if writing else None, timeout, deadline)
                    slice_s = 0.0
                    if timeout != 0:
                        slice_s = _PARKED_SLICE_S if parked else _SLICE_S
                        if deadline is not None:
                            slice_s = max(0.0, min(slice_s, deadline - board.clock.now()))
                    try:
                        self._sock.settimeout(slice_s)
                        return op(*args)
                    except (_host.timeout, BlockingIOError):
                        if timeout == 0:
                            return None
                        if deadline is not None and board.clock.now() >= deadline:
                            raise OSError(errno.ETIMEDOUT)
                        if not parked and _host_time.monotonic() - started >= IO_GRACE_S:
                            _park(deadline)
                            parked = True
                    except ConnectionResetError:
                        raise OSError(errno.ECONNRESET)
                    except BrokenPipeError:
                        raise OSError(errno.EPIPE)
                    except OSError as exc:
                        board.checkpoint()  # a power cut closed it under us (EBADF): report the cut
                        raise OSError(exc.errno or errno.ECONNABORTED)
            finally:
                if parked:
                    _unpark()

        def _vanish(self, data, timeout, deadline):
            """Traffic to an unreachable peer: a write "succeeds", a read waits out its timeout."""
            if data is not None:
                return len(data)
            if timeout == 0:
                return None
            board.sleep(math.inf if deadline is None else max(0.0, deadline - board.clock.now()))
            raise OSError(errno.ETIMEDOUT)

        def read(self, n=-1):
            if n is None or n < 0:  # everything until end of stream (or, non-blocking, until none waits)
                data = bytearray()
                while True:
                    chunk = self._wait(self._sock.recv, 4096)
                    if chunk is None and not data:
                        return None
                    if not chunk:
                        return bytes(data)
                    data += chunk
            data = bytearray()
            while len(data) < n:
                chunk = self._wait(self._sock.recv, n - len(data))
                if chunk is None:  # non-blocking and nothing (more) waiting
                    return bytes(data) if data else None
                if not chunk:
                    break
                data += chunk
            return bytes(data)

        recv = read

        def readinto(self, buf, nbytes=None):
            nbytes = len(buf) if nbytes is None else nbytes
            data = self.read(nbytes)
            if data is None:
                return None
            buf[: len(data)] = data
            return len(data)

        def readline(self):
            line = bytearray()
            while not line.endswith(b"\n"):
                byte = self.read(1)
                if not byte:
                    break
                line += byte
            return bytes(line)

        def write(self, buf, n=None):
            if isinstance(buf, str):  # MicroPython streams take str and write its UTF-8
                buf = buf.encode()
            data = memoryview(bytes(buf))[: len(buf) if n is None else n]
            sent = 0
            while sent < len(data):
                count = self._wait(self._sock.send, data[sent:], writing=True)
                if count is None:
                    break
                sent += count
            return sent if sent or not len(data) else None

        send = write

        def sendall(self, buf):
            self.write(buf)

    return new_module(
        "socket", __doc__, socket=Socket, getaddrinfo=getaddrinfo, AF_INET=AF_INET,
        SOCK_STREAM=SOCK_STREAM, SOCK_DGRAM=SOCK_DGRAM, IPPROTO_TCP=IPPROTO_TCP,
        SOL_SOCKET=SOL_SOCKET, SO_REUSEADDR=SO_REUSEADDR,
    )
