"""`ssl` for one board: MicroPython 1.24's ssl on the ESP32 port (the frozen ssl.py over the mbedtls
`tls` module) as the firmware sees it, with real TLS from the host's ssl module underneath.

What the firmware can tell apart, reproduced:
- `SSLContext(protocol)` starts with verify_mode CERT_NONE (ssl.py sets it); `wrap_socket(sock,
  server_side, key, cert, cert_reqs, cadata, server_hostname, do_handshake)` is ssl.py's shortcut.
- cadata: one DER certificate (bytes; anything after it is refused, as mbedtls >= 3.5 does), or
  PEM text with one or more certificates (the ESP32's mbedtls is built with PEM parsing). Anything
  else raises ValueError("invalid cert"), mbedtls' one error for every unparsable certificate.
- CERT_REQUIRED with no CA loaded fails the handshake with
  OSError(-0x7680, "MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED").
- A certificate that fails verification raises ValueError with mbedtls' verify-info text, one
  "\\n<reason>\\n" per reason: not signed by the trusted CA; Common Name mismatch (only checked when
  server_hostname is given: mbedtls_ssl_set_hostname sets the name to check); validity expired or
  starting in the future. Dates are checked against the *board's* clock (the ESP32 port builds
  mbedtls with MBEDTLS_HAVE_TIME_DATE since 1.22): an unset RTC (2000-01-01) fails a certificate
  issued today. OpenSSL's own date check is switched off and the dates are compared here. The
  certificates are made in host time while the simulated world keeps its own calendar
  (board.true_epoch), so what is compared is the host's time plus the board clock's error: a
  board whose clock NTP set passes today's certificates, an unset or jumped clock is off by as
  much as on a real board.
- Any other handshake failure: OSError(negative mbedtls code, "MBEDTLS_ERR_..."), as the ESP32
  port raises it.
- The wrapped socket is the board's socket with TLS underneath, so reads, writes, timeouts,
  non-blocking reads (None when nothing waits) and select behave as on the plain socket.
Not reproduced: which reasons mbedtls would add when OpenSSL stops at the first (a wrong CA is
reported alone, without the date or name checks mbedtls would also have failed).
"""

import datetime as _dt
import errno
import ssl as _host_ssl

from cryptography import x509 as _x509
from cryptography.hazmat.primitives.serialization import Encoding

from . import new_module

CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED = 0, 1, 2
PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER = 0, 1
MBEDTLS_VERSION = "Mbed TLS (simulated: OpenSSL underneath)"

_CA_CHAIN_REQUIRED = -0x7680
_HANDSHAKE_FAILURE = -0x7780  # MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: the peer gave up
_X509_NO_CHECK_TIME = 0x200000  # OpenSSL's X509_V_FLAG_NO_CHECK_TIME: the board's clock decides

# mbedtls_x509_crt_verify_info's lines, in its order.
_EXPIRED = "The certificate validity has expired"
_CN_MISMATCH = "The certificate Common Name (CN) does not match with the expected CN"
_NOT_TRUSTED = "The certificate is not correctly signed by the trusted CA"
_FUTURE = "The certificate validity starts in the future"
_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH


def _verify_failed(reasons):
    return ValueError("".join("\n%s\n" % r for r in reasons))


def _parse_cadata(cadata):
    """The CA certificates in cadata (DER bytes, or PEM); ValueError("invalid cert") as mbedtls says it."""
    if isinstance(cadata, str):
        cadata = cadata.encode()
    data = bytes(cadata)
    try:
        if b"-----BEGIN " in data:
            certs = _x509.load_pem_x509_certificates(data)
        else:
            certs = [_x509.load_der_x509_certificate(data)]  # refuses trailing bytes, as mbedtls 3.5
    except ValueError:
        raise ValueError("invalid cert") from None
    return certs


def _time_reasons(certs, now):
    reasons = []
    if any(c.not_valid_after_utc < now for c in certs):
        reasons.append(_EXPIRED)
    if any(c.not_valid_before_utc > now for c in certs):
        reasons.append(_FUTURE)
    return reasons


class _BoardTLSSocket(_host_ssl.SSLSocket):
    """A host TLS socket whose non-blocking reads and writes that cannot go on raise BlockingIOError,
    as a plain socket's do, so the board's socket code (floorwatch.sim.mpy.socket) treats both alike."""

    def recv(self, *args):
        try:
            return super().recv(*args)
        except (_host_ssl.SSLWantReadError, _host_ssl.SSLWantWriteError):
            raise BlockingIOError(errno.EAGAIN, "") from None

    def send(self, *args):
        try:
            return super().send(*args)
        except (_host_ssl.SSLWantReadError, _host_ssl.SSLWantWriteError):
            raise BlockingIOError(errno.EAGAIN, "") from None


def module(board):
    class SSLContext:
        def __init__(self, protocol=PROTOCOL_TLS_CLIENT):
            if protocol != PROTOCOL_TLS_CLIENT:
                raise OSError(-0x7080, "MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE")  # no server side here
            self.verify_mode = CERT_NONE
            self._cas = []

        def load_verify_locations(self, cafile=None, cadata=None):
            if cafile:
                with board.runtime.import_module("os").open_file(cafile, "rb") as f:
                    cadata = f.read()
            self._cas.extend(_parse_cadata(cadata))

        def load_cert_chain(self, certfile, keyfile):
            raise OSError(-0x7080, "MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE")  # the node has no client cert

        def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
            required = self.verify_mode == CERT_REQUIRED
            host_ctx = _host_ssl.SSLContext(_host_ssl.PROTOCOL_TLS_CLIENT)
            verify = required and bool(self._cas)  # without a CA: fails below, once the broker's chain is in
            host_ctx.check_hostname = verify and server_hostname is not None
            host_ctx.verify_mode = _host_ssl.CERT_REQUIRED if verify else _host_ssl.CERT_NONE
            host_ctx.verify_flags |= _X509_NO_CHECK_TIME
            host_ctx.sslsocket_class = _BoardTLSSocket
            if self._cas:
                host_ctx.load_verify_locations(cadata="".join(
                    c.public_bytes(Encoding.PEM).decode() for c in self._cas))
            board.checkpoint()
            sock._sock.settimeout(10.0)
            try:
                tls = host_ctx.wrap_socket(sock._sock, server_hostname=server_hostname)
            except _host_ssl.SSLCertVerificationError as exc:
                reason = _CN_MISMATCH if exc.verify_code == _HOSTNAME_MISMATCH else _NOT_TRUSTED
                raise _verify_failed([reason]) from None
            except (_host_ssl.SSLError, ConnectionError) as exc:
                raise OSError(_HANDSHAKE_FAILURE, "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE") from exc
            except OSError as exc:  # the TCP connection failed under the handshake
                raise OSError(exc.errno or errno.ECONNABORTED, "") from None
            if required and not self._cas:  # mbedtls gets the broker's chain, then finds no CA to check it
                tls.close()
                raise OSError(_CA_CHAIN_REQUIRED, "MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED")
            if required:
                leaf = _x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
                error_s = board.wall_time() - (board.true_epoch + board.clock.now())
                now = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=error_s)
                reasons = _time_reasons([leaf] + self._cas, now)
                if reasons:
                    tls.close()
                    raise _verify_failed(reasons)
            sock._sock = tls
            return sock

    def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE, cadata=None,
                    server_hostname=None, do_handshake=True):
        context = SSLContext(PROTOCOL_TLS_SERVER if server_side else PROTOCOL_TLS_CLIENT)
        if cert or key:
            context.load_cert_chain(cert, key)
        if cadata:
            context.load_verify_locations(cadata=cadata)
        context.verify_mode = cert_reqs
        return context.wrap_socket(sock, server_side=server_side, do_handshake_on_connect=do_handshake,
                                   server_hostname=server_hostname)

    return new_module(
        "ssl", __doc__, SSLContext=SSLContext, wrap_socket=wrap_socket, CERT_NONE=CERT_NONE,
        CERT_OPTIONAL=CERT_OPTIONAL, CERT_REQUIRED=CERT_REQUIRED, MBEDTLS_VERSION=MBEDTLS_VERSION,
        PROTOCOL_TLS_CLIENT=PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER=PROTOCOL_TLS_SERVER,
    )
