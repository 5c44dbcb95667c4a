"""floorwatch.security.pki: the development CA and the broker certificate, checked with cryptography."""

import datetime
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from floorwatch.security import pki


@pytest.fixture(scope="module")
def ca():
    return pki.make_ca()


def test_ca_is_a_p256_ca_that_signs_only_end_certificates(ca):
    key, cert = ca
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.issuer == cert.subject
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    cert.verify_directly_issued_by(cert)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert cert.not_valid_before_utc <= now - datetime.timedelta(hours=23)
    assert cert.not_valid_after_utc - now > datetime.timedelta(days=9 * 365)


def test_broker_cert_names_every_host_and_verifies_against_the_ca(ca):
    ca_key, ca_cert = ca
    key, cert = pki.make_broker_cert(ca_key, ca_cert, ["localhost", "127.0.0.1", "broker.plant-a.lan", "::1"])
    cert.verify_directly_issued_by(ca_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "broker.plant-a.lan"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("::1")]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(key.curve, ec.SECP256R1)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=700) < lifetime < datetime.timedelta(days=800)


def test_another_ca_does_not_verify_the_broker_cert(ca):
    ca_key, ca_cert = ca
    _, cert = pki.make_broker_cert(ca_key, ca_cert, ["localhost"])
    _, other_ca = pki.make_ca()
    with pytest.raises(Exception):  # InvalidSignature
        cert.verify_directly_issued_by(other_ca)


def test_chain_verifies_with_the_x509_verifier_for_the_named_host_only(ca):
    ca_key, ca_cert = ca
    _, cert = pki.make_broker_cert(ca_key, ca_cert, ["broker.plant-a.lan", "10.0.0.5"])
    store = x509.verification.Store([ca_cert])
    verifier = x509.verification.PolicyBuilder().store(store)
    verifier.build_server_verifier(x509.DNSName("broker.plant-a.lan")).verify(cert, [])
    verifier.build_server_verifier(x509.IPAddress(ipaddress.ip_address("10.0.0.5"))).verify(cert, [])
    with pytest.raises(x509.verification.VerificationError):
        verifier.build_server_verifier(x509.DNSName("elsewhere.lan")).verify(cert, [])


def test_keys_are_owner_only_and_files_reload(ca, tmp_path):
    ca_key, ca_cert = ca
    pki.write_key(tmp_path / "ca.key", ca_key)
    pki.write_cert(tmp_path / "ca.crt", ca_cert)
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert b"ENCRYPTED" not in (tmp_path / "ca.key").read_bytes()  # the broker starts unattended
    assert pki.load_cert(tmp_path / "ca.crt") == ca_cert
    assert pki.load_key(tmp_path / "ca.key").private_numbers() == ca_key.private_numbers()
    assert 400 < len((tmp_path / "ca.crt").read_bytes()) < 800  # small enough for a node's config


@pytest.mark.parametrize("host", ["bad host", "a/b", "", "x..y", "ümlaut.lan"])
def test_bad_host_names_are_refused(ca, host):
    with pytest.raises(ValueError) as info:
        pki.make_broker_cert(*ca, [host])
    assert repr(host) in str(info.value)


def test_default_hosts_cover_loopback_and_this_machine():
    import socket
    assert pki.default_hosts()[:2] == ["localhost", "127.0.0.1"]
    assert socket.gethostname() in pki.default_hosts()
