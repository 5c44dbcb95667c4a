"""`socket` (usocket) for one board: real host TCP sockets with MicroPython's stream semantics.

Differences from CPython that the firmware (and umqtt.simple) rely on, reproduced here:
- `read(n)` on a blocking socket returns n bytes, fewer only at end of stream (b"" at EOF);
- on a non-blocking socket `read()` returns None when nothing is waiting;
- a timeout raises OSError(ETIMEDOUT), not socket.timeout;
- `write(buf, n)` writes the first n bytes of buf, and accepts a str.
While the board's WiFi link is down nothing gets through: operations fail as the ESP32's lwIP would,
and the broker only notices through its keepalive timer, as with a real outage.

Timeouts are in board seconds, and board time runs at wall-clock speed while the firmware waits on a
socket (see board.ScaledClock): at any --speed, a 10 s timeout is 10 s of real network time. The
host sockets send without Nagle's delay, so umqtt's several small writes per packet do not cost a
round trip each: waiting on the network is time the simulation cannot speed up.
"""

import errno
import socket as _host

from . import new_module

AF_INET, SOCK_STREAM, SOCK_DGRAM, IPPROTO_TCP = 2, 1, 2, 6
SOL_SOCKET, SO_REUSEADDR = 1, 4
_SLICE_S = 0.2  # longest host wait between checks for power cuts and resets


def module(board):
    def _need_link(code=errno.EHOSTUNREACH):
        board.checkpoint()
        if not board.link_up():
            raise OSError(code)

    def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
        _need_link()
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
            board.sockets.add(self)

        # --- lifecycle ---
        def connect(self, addr):
            _need_link()
            self._sock.settimeout(self._timeout if self._timeout else 5.0)
            try:
                self._sock.connect(tuple(addr))
            except _host.timeout:
                raise OSError(errno.ETIMEDOUT)
            except ConnectionRefusedError:
                raise OSError(errno.ECONNREFUSED)
            except OSError as exc:
                raise OSError(exc.errno or errno.ECONNABORTED)

        def close(self):
            board.sockets.discard(self)
            if board.link_up():
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

        # --- I/O ---
        def _wait(self, op, *args):
            """Run a host socket call in short slices so power cuts and resets get through."""
            deadline = None if self._timeout is None else board.clock.now() + self._timeout
            while True:
                _need_link(errno.ECONNABORTED)
                slice_s = _SLICE_S if deadline is None else max(0.0, min(_SLICE_S, deadline - board.clock.now()))
                self._sock.settimeout(slice_s if self._timeout != 0 else 0.0)
                try:
                    return op(*args)
                except (_host.timeout, BlockingIOError):
                    if self._timeout == 0:
                        return None
                    if deadline is not None and board.clock.now() >= deadline:
                        raise OSError(errno.ETIMEDOUT)
                except ConnectionResetError:
                    raise OSError(errno.ECONNRESET)
                except BrokenPipeError:
                    raise OSError(errno.EPIPE)

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
                count = self._wait(self._sock.send, data[sent:])
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
