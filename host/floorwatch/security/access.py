"""How a host tool reaches the broker: where it is, whether over TLS (and which CA vouches for it),
and who it logs in as. One BrokerAccess goes to every paho client the host tools open.

    access = BrokerAccess.from_url("mqtts://monitor@broker.plant-a:8883", ca="ca.crt",
                                   password_file="monitor.password")
    access.connect(client)          # credentials + TLS set, connected, CONNACK checked

A password never goes in a URL (process lists and shell history keep URLs): it comes from a file
(`--password-file`) or the environment (FLOORWATCH_MQTT_PASSWORD), and neither repr() nor any
error message shows it. TLS checks the broker's certificate against the CA and its host name
(paho's defaults, kept). A refused login, an untrusted certificate or an unreachable broker each
become one line (AccessError, a ConnectionError, so callers that catch OSError keep working).

`broker_access_options` gives a click command `--broker URL`, `--ca`, `--user` and
`--password-file`, and hands it one BrokerAccess (or None when `--broker` is optional and left out).
"""

import functools
import os
import ssl
import threading
from urllib.parse import urlsplit

import click

from ..broker import parse_broker_url

PASSWORD_ENV = "FLOORWATCH_MQTT_PASSWORD"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
URL_FORMS = "mqtt://[USER@]HOST[:PORT] or mqtts://[USER@]HOST[:PORT]"
CONNECT_TIMEOUT_S = 10.0


class AccessError(ConnectionError):
    """The broker cannot be used as given (bad URL or file, refused login, TLS, unreachable);
    str() is one line and never holds a password. `option`: the command-line option at fault."""

    def __init__(self, message, option=None):
        super().__init__(message)
        self.option = option

    def __str__(self):
        return self.args[0]


class BrokerAccess:
    def __init__(self, host, port, tls=False, ca=None, user=None, password=None):
        if password is not None and user is None:
            raise AccessError("a broker password needs a user name to go with it")
        if ca is not None and not tls:
            raise AccessError("a CA certificate is for TLS (mqtts://) connections only")
        self.host, self.port, self.tls = host, int(port), bool(tls)
        self.ca = None if ca is None else str(ca)
        self.user = user
        self.password = password

    @classmethod
    def of(cls, where, port=None):
        """`where` itself when it is a BrokerAccess, else plain anonymous access to (where, port)."""
        return where if isinstance(where, cls) else cls(where, port)

    @classmethod
    def from_url(cls, url, ca=None, user=None, password_file=None, env=None):
        """A BrokerAccess from a URL (see URL_FORMS), a CA file, a user (or USER@ in the URL) and a
        password from `password_file`, else from env FLOORWATCH_MQTT_PASSWORD when there is a user."""
        env = os.environ if env is None else env
        scheme, _, rest = url.partition("://") if isinstance(url, str) else ("", "", "")
        userinfo, at, hostport = rest.rpartition("@")
        if ":" in userinfo:  # checked first: the message below must not echo a URL with a password in it
            raise AccessError("broker URL: a password does not go in the URL (process lists and shell "
                              "history keep it): use --password-file FILE or %s" % PASSWORD_ENV, "--broker")
        if scheme not in DEFAULT_PORTS or (at and not userinfo):
            raise AccessError("bad broker URL %r: expected %s" % (url, URL_FORMS), "--broker")
        try:
            host, port = parse_broker_url("mqtt://" + hostport)
            given_port = urlsplit("mqtt://" + hostport).port
        except ValueError:
            raise AccessError("bad broker URL %r: expected %s" % (url, URL_FORMS), "--broker") from None
        if userinfo and user and userinfo != user:
            raise AccessError("broker URL names user %r but --user says %r" % (userinfo, user), "--user")
        user = user or userinfo or None
        tls = scheme == "mqtts"
        if ca is not None and not tls:
            raise AccessError("--ca is for TLS: use an mqtts:// broker URL", "--ca")
        if ca is not None:
            _readable(ca, "CA certificate", "--ca")
        if password_file is not None:
            if user is None:
                raise AccessError("--password-file needs a user: --user NAME or USER@ in the broker URL", "--user")
            password = read_password_file(password_file)
        else:
            password = env.get(PASSWORD_ENV) if user else None
            if user and not password:
                raise AccessError("user %r needs a password: --password-file FILE or %s" % (user, PASSWORD_ENV),
                                  "--password-file")
        return cls(host, given_port or DEFAULT_PORTS[scheme], tls, ca, user, password)

    @property
    def url(self):
        """Where and as whom, without the password: mqtts://monitor@localhost:8883."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s%s:%d" % ("mqtts" if self.tls else "mqtt", self.user + "@" if self.user else "", host, self.port)

    def __repr__(self):
        extra = "".join((", ca=%r" % self.ca if self.ca else "",
                         ", password=<hidden>" if self.password is not None else ""))
        return "BrokerAccess(%r%s)" % (self.url, extra)

    def __str__(self):
        return self.url

    # --- paho --------------------------------------------------------------------------------
    def configure(self, client):
        """Set the client's login and TLS (the broker's certificate checked against the CA, and its
        host name). AccessError when the CA file cannot be used."""
        if self.user is not None:
            client.username_pw_set(self.user, self.password)
        if self.tls:
            try:
                client.tls_set(ca_certs=self.ca, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError) as exc:
                raise AccessError("CA certificate %s: cannot use it: %s" % (self.ca, _reason(exc))) from None

    def connect(self, client, keepalive=30, timeout=CONNECT_TIMEOUT_S):
        """configure() the client, connect it, start its network loop and wait for the broker's
        CONNACK. The client's own on_connect runs for an accepted connection only. Raises
        AccessError (the loop stopped) when the broker's certificate is not trusted, it refuses
        the login, or it does not answer within `timeout` s; the socket's own OSError when it
        cannot be reached (callers name the broker their way)."""
        self.configure(client)
        answered = threading.Event()
        refusals = []
        inner = client.on_connect

        def on_connect(client, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                refusals.append(reason_code)
            elif inner is not None:
                inner(client, userdata, flags, reason_code, properties)
            answered.set()

        client.on_connect = on_connect
        try:
            client.connect(self.host, self.port, keepalive=keepalive)
        except ssl.SSLCertVerificationError as exc:
            raise AccessError("broker %s: its TLS certificate is not trusted: %s"
                              % (self.where, exc.verify_message or _reason(exc))) from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise AccessError("broker %s: TLS failed: %s" % (self.where, _reason(exc))) from None
        except ConnectionResetError:
            if not self.tls:
                raise
            raise AccessError("broker %s closed the connection in the TLS handshake: is port %d a TLS "
                              "(mqtts) listener?" % (self.where, self.port)) from None
        client.loop_start()
        if answered.wait(timeout) and not refusals:
            return client
        client.loop_stop()
        client.disconnect()
        if refusals:
            raise AccessError(self.refusal(refusals[0]))
        hint = "" if self.tls else " (a TLS listener? then use mqtts://)"
        raise AccessError("broker %s did not answer within %g s%s" % (self.where, timeout, hint))

    def refusal(self, reason_code):
        """One line for a refused CONNACK, naming the broker and the user (never the password)."""
        who = "user %r" % self.user if self.user else "an anonymous client"
        hint = ""
        if reason_code.value in (134, 135):  # bad user name or password / not authorized
            hint = " (wrong user or password?)" if self.user else " (it wants a login: --user and --password-file)"
        return "broker %s refused %s: %s%s" % (self.where, who, reason_code, hint)

    @property
    def where(self):
        return "%s%s:%d" % ("mqtts://" if self.tls else "", self.host, self.port)


def _reason(exc):
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)


def _readable(path, what, option):
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise AccessError("%s %s: cannot read it: %s" % (what, path, exc.strerror or exc), option) from None


def read_password_file(path):
    """The password in file `path` (its one line); AccessError naming the file when it cannot be used."""
    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise AccessError("password file %s: cannot read it: %s" % (path, why), "--password-file") from None
    if not password:
        raise AccessError("password file %s is empty" % path, "--password-file")
    if "\n" in password:
        raise AccessError("password file %s: the password must be its first and only line" % path,
                          "--password-file")
    return password


# --- click -----------------------------------------------------------------------------------
def broker_access_options(required=True, help="The broker: " + URL_FORMS + ".", name="broker"):
    """Add --broker URL, --ca FILE, --user NAME and --password-file FILE to a click command; the
    command gets one BrokerAccess as `name` (None when --broker is optional and not given)."""
    options = [
        click.option("--broker", "_broker_url", required=required, metavar="URL", help=help),
        click.option("--ca", "_broker_ca", metavar="FILE", type=click.Path(dir_okay=False),
                     help="CA certificate (PEM) the broker's TLS certificate must be signed by (mqtts://)."),
        click.option("--user", "_broker_user", metavar="NAME", help="User name to log in to the broker with."),
        click.option("--password-file", "_broker_password_file", metavar="FILE", type=click.Path(dir_okay=False),
                     help="File holding the broker password (else env %s)." % PASSWORD_ENV),
    ]

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, _broker_url, _broker_ca, _broker_user, _broker_password_file, **kwargs):
            access = None
            if _broker_url is not None:
                try:
                    access = BrokerAccess.from_url(_broker_url, _broker_ca, _broker_user, _broker_password_file)
                except AccessError as exc:
                    raise click.BadParameter(str(exc), param_hint=exc.option or "--broker") from None
            elif any(v is not None for v in (_broker_ca, _broker_user, _broker_password_file)):
                raise click.UsageError("--ca, --user and --password-file go with --broker URL")
            return function(*args, **{name: access}, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate
