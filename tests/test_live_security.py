"""Station passwords, Basic credentials and the server's TLS certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from v2ghub.live.security import (
    PASSWORD_LENGTH,
    basic_credentials,
    basic_header,
    generate_password,
    hash_password,
    is_loopback,
    self_signed_certificate,
    server_tls_context,
    verify_password,
)


def test_generated_passwords_fit_ocpp_and_differ() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    # OCPP 2.x BasicAuthPassword: 16 to 40 characters.
    assert all(len(p) == PASSWORD_LENGTH and 16 <= len(p) <= 40 for p in passwords)


def test_hash_verifies_only_its_password_and_is_salted() -> None:
    password = generate_password()
    first, second = hash_password(password), hash_password(password)
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$4096$8$1$")
    assert password not in first
    assert verify_password(password, first)
    assert verify_password(password, second)
    assert not verify_password(password + "x", first)
    assert not verify_password(password, "plain-text")
    assert not verify_password(password, "scrypt$4096$8$1$not-base64!$AAAA")


# Text a header can carry: no lone surrogates (they have no UTF-8 form, and no station's
# id or password read off the network holds one).
@settings(max_examples=30, deadline=None)
@given(
    user=st.text(st.characters(codec="utf-8", blacklist_characters=":"), max_size=20),
    password=st.text(st.characters(codec="utf-8"), max_size=40),
)
def test_basic_header_round_trips(user: str, password: str) -> None:
    assert basic_credentials(basic_header(user, password)) == (user, password)


@pytest.mark.parametrize("header", [None, "", "Bearer abc", "Basic", "Basic !!!", "Basic dXNlcg=="])
def test_malformed_basic_headers_give_no_credentials(header: str | None) -> None:
    # "dXNlcg==" is "user" with no colon.
    assert basic_credentials(header) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.20", False),
        ("charging.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_self_signed_certificate_is_made_once_and_loads(tmp_path: Path) -> None:
    certfile, keyfile = self_signed_certificate(tmp_path / "tls", "192.168.1.20")
    certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["192.168.1.20"]
    assert keyfile.stat().st_mode & 0o777 == 0o600
    again = self_signed_certificate(tmp_path / "tls", "192.168.1.20")
    assert again == (certfile, keyfile)
    assert certfile.read_bytes() == again[0].read_bytes()
    context = server_tls_context(certfile, keyfile)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_unloadable_certificate_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match=r"cert\.pem: cannot load the TLS certificate and key"):
        server_tls_context(bad, bad)


def test_a_certificate_for_every_address_names_this_machine(tmp_path: Path) -> None:
    certfile, _ = self_signed_certificate(tmp_path, "0.0.0.0")
    certificate = x509.load_pem_x509_certificate(certfile.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    assert "0.0.0.0" not in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
