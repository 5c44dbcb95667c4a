"""The broker's certificates: a development CA and the broker certificate it signs (`cryptography`).

Everything is EC P-256: a node's TLS stack (mbedTLS on the ESP32) verifies it quickly, and each
certificate is about 500-600 bytes of PEM, small enough to sit in a node's config.json as the CA.

- The CA is self-signed, may sign end certificates only (path length 0) and lasts about 10 years:
  every node carries it, so replacing it means redeploying the whole fleet.
- The broker certificate names every host name and IP address nodes and tools use to reach the
  broker (hostname checking is on everywhere) and lasts about 2 years: long enough not to surprise
  anyone, short enough that a copied broker key stops being useful; renewing it touches only the
  broker, since nodes trust the CA, not the certificate.
- Both start one day back, so a node or host whose clock is a little behind still accepts them.

Keys are written as unencrypted PEM, 0600: the broker must start unattended, with nobody to type a
passphrase, so the file's permissions are what protects the key.
"""

import datetime
import ipaddress
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .passwd import write_private

CA_DAYS = 3650
BROKER_DAYS = 730
BACKDATE = datetime.timedelta(days=1)


def default_hosts():
    """The names a broker on this machine answers to: localhost, 127.0.0.1 and its host name."""
    return list(dict.fromkeys(["localhost", "127.0.0.1", socket.gethostname()]))


def make_ca(common_name="floorwatch development CA", days=CA_DAYS):
    """(private key, certificate) of a new self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False)
    cert = (_builder(name, name, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_broker_cert(ca_key, ca_cert, hosts, days=BROKER_DAYS):
    """(private key, certificate) for a broker reachable as each of `hosts` (names or IP
    addresses), signed by the CA."""
    hosts = list(hosts)
    if not hosts:
        raise ValueError("the broker certificate needs at least one host name or IP address")
    names = x509.SubjectAlternativeName([_general_name(h) for h in hosts])
    key = ec.generate_private_key(ec.SECP256R1())
    # Clients check the host against the SAN only; the common name is just a label.
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "floorwatch broker")])
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (_builder(subject, ca_cert.subject, key.public_key(), days)
            .add_extension(names, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write_key(path, key):
    """The private key as unencrypted PEM, mode 0600."""
    write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode("ascii"))


def write_cert(path, cert):
    """The certificate as PEM (public: 0644)."""
    with open(path, "w", encoding="ascii") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def _builder(subject, issuer, public_key, days):
    start = datetime.datetime.now(datetime.timezone.utc) - BACKDATE
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + BACKDATE + datetime.timedelta(days=days)))


def _general_name(host):
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.split(".") if isinstance(host, str) else [""]
    if not all(0 < len(label) <= 63 and label.isascii() and label.replace("-", "").isalnum()
               for label in labels):
        raise ValueError("%r is neither a host name nor an IP address" % (host,))
    return x509.DNSName(host)
