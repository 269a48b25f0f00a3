"""Station credentials and TLS for the OCPP server (OCPP security profiles 1 and 2).

Profile 1 is HTTP Basic authentication over plain ``ws://``; profile 2 adds TLS
(``wss://``). Every station has its own generated password (the OCPP 2.x ``BasicAuthPassword``
is 16-40 characters); only a salted scrypt hash of it is stored. A generated password is
random enough that no dictionary attack applies, so a light scrypt cost keeps a thousand
stations reconnecting at once from stalling the server.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PASSWORD_LENGTH = 32
_SCRYPT_N = 2**12
_SCRYPT_R = 8
_SCRYPT_P = 1
_HASH_BYTES = 32
_SALT_BYTES = 16


def generate_password() -> str:
    """A new station password: 32 URL-safe characters (about 190 bits)."""
    return secrets.token_urlsafe(48)[:PASSWORD_LENGTH]


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64) of ``password`` with a fresh salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        (
            "scrypt",
            str(_SCRYPT_N),
            str(_SCRYPT_R),
            str(_SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def verify_password(password: str, stored_hash: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (constant-time comparison)."""
    parts = stored_hash.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES, maxmem=64 * 1024 * 1024
    )


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an HTTP ``Authorization: Basic ...`` header, or ``None``."""
    if header is None:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (ValueError, binascii.Error):
        return None
    user, colon, password = decoded.partition(":")
    if not colon:
        return None
    return user, password


def basic_header(user: str, password: str) -> str:
    """The ``Authorization`` header value a station sends."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_tls_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context from a certificate chain and its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(
            f"{certfile}: cannot load the TLS certificate and key ({error})"
        ) from error
    return context


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _local_addresses() -> list[str]:
    """This machine's IP addresses by its name, and loopback (no network calls)."""
    addresses = {"127.0.0.1"}
    try:
        for *_, address in socket.getaddrinfo(socket.gethostname(), None):
            addresses.add(str(address[0]))
    except OSError:
        pass
    return sorted(addresses)


def self_signed_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` in ``folder`` (made once, reused afterwards).

    For an unspecified address (``0.0.0.0``, ``::``) it names this machine: its host name,
    ``localhost`` and its addresses, so that stations can check the name they connect to.

    Returns (certificate file, key file). Stations must trust the certificate file (it is
    its own authority): copy it to them, or pass it to ``v2ghub chargers --ca-file``.
    """
    certfile = folder / "server-cert.pem"
    keyfile = folder / "server-key.pem"
    if certfile.exists() and keyfile.exists():
        return certfile, keyfile
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    alt_names = [_alt_name(host)]
    if host in ("0.0.0.0", "::"):  # every address of this machine: name the machine
        alt_names = [x509.DNSName(socket.gethostname()), x509.DNSName("localhost")]
        alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in _local_addresses()]
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    # Created owner-only: the key is never readable by others, not even for a moment.
    descriptor = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certfile, keyfile
