"""`ssl` (ussl) for one board: wraps a simulated socket in real TLS from the host's ssl module."""

import ssl as _host_ssl

from . import new_module

CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED = 0, 1, 2
PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER = 0, 1


def module(board):
    class SSLContext:
        def __init__(self, protocol=PROTOCOL_TLS_CLIENT):
            self._ctx = _host_ssl.SSLContext(_host_ssl.PROTOCOL_TLS_CLIENT)
            self._ctx.check_hostname = False
            self._ctx.verify_mode = _host_ssl.CERT_NONE
            self.verify_mode = CERT_NONE

        def load_verify_locations(self, cafile=None, cadata=None):
            if isinstance(cadata, (bytes, bytearray)) and not cadata.lstrip().startswith(b"-----"):
                cadata = _host_ssl.DER_cert_to_PEM_cert(bytes(cadata))
            elif isinstance(cadata, (bytes, bytearray)):
                cadata = bytes(cadata).decode()
            self._ctx.load_verify_locations(cafile=cafile, cadata=cadata)

        def load_cert_chain(self, certfile, keyfile):
            self._ctx.load_cert_chain(certfile, keyfile)

        def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
            mode = {CERT_NONE: _host_ssl.CERT_NONE, CERT_OPTIONAL: _host_ssl.CERT_OPTIONAL,
                    CERT_REQUIRED: _host_ssl.CERT_REQUIRED}[self.verify_mode]
            self._ctx.check_hostname = mode == _host_ssl.CERT_REQUIRED and server_hostname is not None
            self._ctx.verify_mode = mode
            board.checkpoint()
            sock._sock.settimeout(10.0)
            try:
                sock._sock = self._ctx.wrap_socket(sock._sock, server_hostname=server_hostname)
            except (_host_ssl.SSLError, _host_ssl.CertificateError) as exc:
                raise OSError(-0x2700, str(exc))  # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED family
            return sock

    def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_NONE, cadata=None,
                    server_hostname=None, do_handshake=True):
        context = SSLContext()
        context.verify_mode = cert_reqs
        if cadata:
            context.load_verify_locations(cadata=cadata)
        return context.wrap_socket(sock, server_hostname=server_hostname)

    return new_module(
        "ssl", __doc__, SSLContext=SSLContext, wrap_socket=wrap_socket, CERT_NONE=CERT_NONE,
        CERT_OPTIONAL=CERT_OPTIONAL, CERT_REQUIRED=CERT_REQUIRED,
        PROTOCOL_TLS_CLIENT=PROTOCOL_TLS_CLIENT, PROTOCOL_TLS_SERVER=PROTOCOL_TLS_SERVER,
    )
