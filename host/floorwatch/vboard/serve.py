"""Serial endpoints for a virtual board: a TCP port (`socket://host:port`) or a pseudo-terminal.

Both behave like a USB serial adapter with one program at a time on it: bytes from the host go to
`on_data`, `send()` goes back to whoever has the port open (and nowhere when nobody has, as a UART's
output is lost with no one listening), and `on_close` tells that the program let go of the port.
pyserial opens either (`serial_for_url("socket://...")`, or the pty's /dev/pts path), so esptool
and mpremote need nothing special.

Written by hand: pyserial has the client side of socket:// and RFC 2217 but no server for a
device that is itself software.
"""

import errno
import os
import select
import socket
import threading
import tty
from urllib.parse import urlparse


class EndpointError(ValueError):
    """A --listen value that cannot be served; str() is one line."""


def open_endpoint(listen):
    """An endpoint for `socket://HOST:PORT` (port 0: any free one) or `pty`."""
    if listen == "pty":
        return PtyEndpoint()
    url = urlparse(listen)
    if url.scheme != "socket" or not url.hostname:
        raise EndpointError("cannot listen on %r: use socket://HOST:PORT or pty" % listen)
    try:
        return SocketEndpoint(url.hostname, url.port or 0)
    except OSError as exc:
        raise EndpointError("cannot listen on %s: %s" % (listen, exc.strerror or exc)) from None


class SocketEndpoint:
    def __init__(self, host, port):
        self._server = socket.create_server((host, port))
        self.url = "socket://%s:%d" % self._server.getsockname()[:2]
        self._client = None
        self._lock = threading.Lock()
        self._closed = False

    def serve(self, on_data, on_close):
        """Accept programs one at a time, in a daemon thread; a second one is turned away."""
        threading.Thread(target=self._accept, args=(on_data, on_close), daemon=True,
                         name="vboard " + self.url).start()

    def _accept(self, on_data, on_close):
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                busy = self._client is not None
                if not busy:
                    self._client = client
            if busy:  # a serial port is exclusive: the second opener finds it taken
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, on_data, on_close), daemon=True).start()

    def _pump(self, client, on_data, on_close):
        try:
            while True:
                try:
                    data = client.recv(65536)
                    # mpremote and esptool wait for an answer to each small write: acknowledge at
                    # once instead of delaying the ACK (about 40 ms an exchange otherwise).
                    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                except OSError:
                    data = b""
                if not data:
                    break
                on_data(data)
        finally:
            with self._lock:
                self._client = None
            client.close()
            on_close()

    def send(self, data):
        with self._lock:
            client = self._client
            if client is None or not data:
                return
            try:
                client.sendall(data)
            except OSError:
                pass  # the program went away; its reader thread notices

    def close(self):
        self._closed = True
        self._server.close()
        with self._lock:
            if self._client is not None:
                self._client.shutdown(socket.SHUT_RDWR)


class PtyEndpoint:
    """A pseudo-terminal: programs open `url` (/dev/pts/N) as they would a USB serial port."""

    def __init__(self):
        self._master, slave = os.openpty()
        tty.setraw(slave)
        self.url = os.ttyname(slave)
        os.close(slave)  # so that the master sees a hang-up whenever no program has the port open
        os.set_blocking(self._master, False)
        self._closed = False

    def serve(self, on_data, on_close):
        threading.Thread(target=self._pump, args=(on_data, on_close), daemon=True,
                         name="vboard " + self.url).start()

    def _pump(self, on_data, on_close):
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        open_now = False
        while not self._closed:
            events = poller.poll(50)
            hung_up = any(mask & select.POLLHUP for _, mask in events)
            if hung_up:
                if open_now:
                    open_now = False
                    on_close()
                threading.Event().wait(0.05)  # nobody has the port: look again soon
                continue
            if not events:
                continue
            try:
                data = os.read(self._master, 65536)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EIO):
                    continue
                return
            if data:
                open_now = True
                on_data(data)

    def send(self, data):
        try:
            os.write(self._master, data)
        except OSError:
            pass  # nobody listening, or the buffer is full: a UART's output is lost the same way

    def close(self):
        self._closed = True
        try:
            os.close(self._master)
        except OSError:
            pass
