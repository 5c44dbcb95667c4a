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

Cost. Thousands of boards share one interpreter lock, and every host system call a board makes
lets the lock go (and, on a busy host, waits to get it back). So the host socket is non-blocking
for good: an operation is tried at once and only when it cannot go on does the board poll the
descriptor (no timeout to set before each call, no poll before a call that would not block); and
reads take what the host has, up to _READ_AHEAD bytes, keeping the rest for the next read (as
lwIP's receive buffer would hold it), so the 3-5 small reads umqtt makes per MQTT packet cost
one system call.
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
_READ_AHEAD = 4096  # bytes a read asks the host for, whatever the firmware asked (see Cost)
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
            self._sock.setblocking(False)  # for good: see Cost in the module docstring
            self._nonblocking = self._sock  # the host socket made so (ssl puts a TLS one in its place)
            self._rbuf, self._rpos = b"", 0  # read ahead from the host; the firmware has taken _rbuf[:_rpos]
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
                code = self._sock.connect_ex(addr)
                if code in (errno.EINPROGRESS, errno.EAGAIN):
                    if self._timeout == 0:
                        raise OSError(errno.EINPROGRESS)
                    self._wait(self._connected, timeout=timeout, writing=True)
                elif code:
                    raise OSError(code, "")
            except ConnectionRefusedError:
                raise OSError(errno.ECONNREFUSED)
            except OSError as exc:
                board.checkpoint()  # a power cut closed it under us (EBADF): report the cut
                raise OSError(exc.errno or errno.ECONNABORTED)
            self._addr = addr

        def _connected(self):
            """A connect in progress: True once done; BlockingIOError while it goes on."""
            poller = _host_select.poll()
            poller.register(self._sock.fileno(), _host_select.POLLOUT)
            if not poller.poll(0):
                raise BlockingIOError(errno.EINPROGRESS, "")
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
            self._rbuf, self._rpos = b"", 0
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
            """Run a host socket call, waiting for the socket in short slices so power cuts and
            resets get through: the call is tried at once (the host socket never blocks), and
            while it cannot go on the board polls the descriptor for up to a slice, then tries
            again, until the timeout.

            Under a virtual clock the board holds time still for IO_GRACE_S of wall time, then
            parks: time runs on, and the call times out when board time reaches its deadline.
            """
            timeout = self._timeout if timeout is _OWN else timeout
            deadline = None if timeout is None else board.clock.now() + timeout
            started = None  # wall time of the first try that could not go on
            parked = False
            if self._sock is not self._nonblocking:  # a TLS socket put in place since (ssl.wrap_socket)
                self._sock.setblocking(False)
                self._nonblocking = self._sock
            try:
                while True:
                    _need_link(errno.ECONNABORTED)
                    if self._vanishing():
                        return self._vanish(args[0] if writing else None, timeout, deadline)
                    try:
                        return op(*args)
                    except BlockingIOError:
                        pass
                    except ConnectionResetError:
                        raise OSError(errno.ECONNRESET)
                    except BrokenPipeError:
                        raise OSError(errno.EPIPE)
                    except OSError as exc:
                        board.checkpoint()  # a power cut closed it under us (EBADF): report the cut
                        raise OSError(exc.errno or errno.ECONNABORTED)
                    if timeout == 0:
                        return None
                    if deadline is not None and board.clock.now() >= deadline:
                        raise OSError(errno.ETIMEDOUT)
                    now = _host_time.monotonic()
                    if started is None:
                        started = now
                    elif not parked and now - started >= IO_GRACE_S:
                        _park(deadline)
                        parked = True
                    slice_s = _PARKED_SLICE_S if parked else _SLICE_S
                    if deadline is not None:
                        slice_s = max(0.0, min(slice_s, deadline - board.clock.now()))
                    self._ready(writing, slice_s)
            finally:
                if parked:
                    _unpark()

        def _ready(self, writing, seconds):
            """Wait up to `seconds` of wall time for the host socket to be writable or readable."""
            fd = self._sock.fileno()
            if fd < 0:  # closed under us by a power cut: the next try reports it
                return
            poller = _host_select.poll()
            poller.register(fd, _host_select.POLLOUT if writing else _host_select.POLLIN)
            poller.poll(math.ceil(seconds * 1000))

        def _recv(self, n):
            """Up to n bytes: what was read ahead, else one host read of up to _READ_AHEAD bytes,
            the rest kept; b"" at end of stream; BlockingIOError when nothing is there."""
            buf, at = self._rbuf, self._rpos
            if at >= len(buf):
                buf, at = self._sock.recv(max(n, _READ_AHEAD)), 0
                if len(buf) <= n:
                    self._rbuf, self._rpos = b"", 0
                    return buf
            self._rbuf, self._rpos = buf, min(at + n, len(buf))
            return buf[at:at + n]

        def _pending(self):
            """Bytes read ahead and not yet taken (the fake select sees them as readable)."""
            return len(self._rbuf) - self._rpos

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
                    chunk = self._wait(self._recv, _READ_AHEAD)
                    if chunk is None and not data:
                        return None
                    if not chunk:
                        return bytes(data)
                    data += chunk
            data = bytearray()
            while len(data) < n:
                chunk = self._wait(self._recv, n - len(data))
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
