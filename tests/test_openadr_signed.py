"""The OpenADR VEN against a VTN that signs its messages and checks the VEN's.

openleadr checks a VEN's signature only over TLS (``request.secure``), against the
fingerprint its ``ven_lookup`` returns, and requires the VEN's TLS client certificate to
carry that same fingerprint. So the VTN here serves HTTPS on loopback with a self-signed
certificate, lets in the VEN's self-signed certificate for TLS, and signs what it
sends with its own; the VEN signs with its certificate and checks the VTN's fingerprint.
No CA: each side's certificate is the other's trust anchor.

The CSMS runs as in ``tests/test_openadr_ven.py`` (server, control loop, VEN; no chargers:
a dispatch event becomes a site limit whatever the site draws).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.openadr_vtn import Vtn, dispatch, free_port, until
from tests.test_openadr_ven import (
    CONTROL_INTERVAL_S,
    SITE,
    TARGET_KW,
    VEN_ID,
    VEN_NAME,
    control_settings,
)
from v2ghub.live.clock import SystemClock
from v2ghub.live.control import ControlLoop
from v2ghub.live.openadr_resources import Resource, Resources
from v2ghub.live.openadr_ven import OpenAdrVen, VenSettings
from v2ghub.live.server import CsmsServer, ServerSettings
from v2ghub.planning import make_planner
from v2ghub.store.records import EventKind
from v2ghub.store.repository import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from openleadr import OpenADRServer, utils
    from openleadr.service.vtn_service import VTNService


@dataclass(frozen=True)
class Identity:
    """A self-signed certificate and its key (PEM files) and OpenADR fingerprint."""

    cert: Path
    key: Path
    fingerprint: str


def make_identity(directory: Path, name: str) -> Identity:
    """A self-signed EC certificate for ``name``, valid for 127.0.0.1, written as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Identity(cert_path, key_path, utils.certificate_fingerprint(cert_pem))


@dataclass(frozen=True)
class Pki:
    vtn: Identity
    ven: Identity
    stranger: Identity


VTN_CLASS_STATE = (
    "_create_message",
    "ven_lookup",
    "fingerprint_lookup",
    "verify_message_signatures",
)


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[Pki]:
    """The VTN's, the VEN's and an unknown party's identities.

    openleadr keeps a VTN's signing and lookups on the ``VTNService`` class: put back
    afterwards, so that later VTNs in this process start as they would have.
    """
    saved = {
        name: VTNService.__dict__[name] for name in VTN_CLASS_STATE if name in VTNService.__dict__
    }
    yield Pki(*(make_identity(tmp_path, name) for name in ("vtn", "ven", "stranger")))
    for name in VTN_CLASS_STATE:
        if name in saved:
            setattr(VTNService, name, saved[name])
        elif name in VTNService.__dict__:
            delattr(VTNService, name)


@dataclass
class SignedVtn(Vtn):
    """A test VTN and the fingerprints its lookup was asked to check."""

    lookups: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running_signed_vtn(pki: Pki, *, tls_clients: Path) -> AsyncIterator[SignedVtn]:
    """An openleadr VTN over HTTPS that signs with ``pki.vtn`` and knows ``pki.ven``'s
    fingerprint; ``tls_clients``: the certificates it lets open a TLS connection (PEM)."""
    port = free_port()
    lookups: list[str] = []

    def ven_lookup(ven_id: str) -> dict[str, str]:
        lookups.append(ven_id)
        return {
            "ven_id": VEN_ID,
            "ven_name": VEN_NAME,
            "registration_id": "reg",
            "fingerprint": pki.ven.fingerprint,
        }

    server = OpenADRServer(
        vtn_id="TEST-VTN",
        cert=str(pki.vtn.cert),
        key=str(pki.vtn.key),
        http_cert=str(pki.vtn.cert),
        http_key=str(pki.vtn.key),
        http_ca_file=str(tls_clients),
        http_port=port,
        http_host="127.0.0.1",
        requested_poll_freq=timedelta(seconds=1),
        show_fingerprint=False,
        ven_lookup=ven_lookup,
    )

    def registration(payload: dict[str, Any]) -> tuple[str, str]:
        return VEN_ID, "reg"

    server.add_handler("on_create_party_registration", registration)
    await server.run()
    vtn = SignedVtn(
        server, f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b", VEN_ID, lookups=lookups
    )
    try:
        yield vtn
    finally:
        with contextlib.suppress(Exception):
            await server.stop()


def ven_settings(vtn: Vtn, pki: Pki, *, ven: Identity, vtn_fingerprint: str) -> VenSettings:
    return VenSettings(
        vtn_url=vtn.url,
        ven_name=VEN_NAME,
        resources=Resources({"r-depot": Resource("r-depot", SITE)}),
        cert=ven.cert,
        key=ven.key,
        vtn_fingerprint=vtn_fingerprint,
        ca_file=pki.vtn.cert,
        poll_s=0.5,
        report_sampling_s=1.0,
        retry_first_s=0.2,
        retry_most_s=1.0,
        control_interval_s=CONTROL_INTERVAL_S,
    )


@dataclass
class Csms:
    control: ControlLoop
    ven: OpenAdrVen


@contextlib.asynccontextmanager
async def running_csms(store: Store, settings: VenSettings) -> AsyncIterator[Csms]:
    """The OCPP server, its control loop and the VEN (signed as ``settings`` say)."""
    clock = SystemClock()
    settings_of_loop = control_settings()
    server_settings = ServerSettings(host="127.0.0.1", port=0, call_timeout_s=10)
    async with CsmsServer(store, server_settings, clock=clock) as server:
        control = server.control_loop(make_planner(settings_of_loop.planner), settings_of_loop)
        stop = asyncio.Event()
        loop_task = asyncio.create_task(control.run(stop))
        ven = OpenAdrVen(
            settings,
            store=store,
            clock=clock,
            status=control.status,
            import_limits_kw={SITE: 40.0},
            replan=control.trigger,
        )
        try:
            async with ven:
                yield Csms(control, ven)
        finally:
            stop.set()
            await asyncio.gather(loop_task, return_exceptions=True)


async def failing_while_planning(store: Store, csms: Csms) -> None:
    """Until the VEN's failed exchange is logged and, as several retries go by (0.2 s
    doubling to 1 s), the control loop has planned twice more."""
    await until(
        lambda: any("VTN unreachable" in e.detail for e in store.events(kind=EventKind.OPENADR)),
        timeout_s=10,
        what="the failed exchange logged",
    )
    plans = csms.control.status.plans
    await until(
        lambda: csms.control.status.plans >= plans + 2,
        timeout_s=20,
        what="the control loop to keep planning",
    )


async def test_signed_messages_register_and_a_dispatch_becomes_a_site_limit(
    tmp_path: Path, pki: Pki
) -> None:
    with Store.open(data_dir=tmp_path) as store:
        async with running_signed_vtn(pki, tls_clients=pki.ven.cert) as vtn:
            settings = ven_settings(vtn, pki, ven=pki.ven, vtn_fingerprint=pki.vtn.fingerprint)
            async with running_csms(store, settings) as csms:
                await until(csms.ven.registered.is_set, timeout_s=20, what="registration")
                event_id = dispatch(vtn, target_kw=TARGET_KW)
                await until(lambda: event_id in vtn.opts, timeout_s=10, what="the opt answer")
                assert vtn.opts[event_id] == "optIn"
                assert store.site_limits(datetime.now(UTC))[SITE][0] == TARGET_KW
                (row,) = [e for e in store.grid_events() if e.source == f"openadr:{VEN_NAME}"]
                assert row.external_id == f"{event_id}/0/0"


async def test_a_ven_signing_with_an_unknown_certificate_is_refused(
    tmp_path: Path, pki: Pki
) -> None:
    # TLS lets the stranger in, and this VTN's registration handler does not check the
    # fingerprint: openleadr's check of every message naming a venID must refuse it (an
    # OpenADR 463 answer), and the VEN must count that as a failed exchange.
    tls_clients = tmp_path / "clients.pem"
    tls_clients.write_bytes(pki.ven.cert.read_bytes() + pki.stranger.cert.read_bytes())
    with Store.open(data_dir=tmp_path) as store:
        async with running_signed_vtn(pki, tls_clients=tls_clients) as vtn:
            settings = ven_settings(vtn, pki, ven=pki.stranger, vtn_fingerprint=pki.vtn.fingerprint)
            async with running_csms(store, settings) as csms:
                event_id = dispatch(vtn, target_kw=TARGET_KW)
                await failing_while_planning(store, csms)
                assert event_id not in vtn.opts
                assert store.site_limits(datetime.now(UTC)) == {}
                assert store.vtn_events() == []
        assert VEN_ID in vtn.lookups


async def test_a_wrong_vtn_fingerprint_never_accepts_the_vtn(tmp_path: Path, pki: Pki) -> None:
    with Store.open(data_dir=tmp_path) as store:
        async with running_signed_vtn(pki, tls_clients=pki.ven.cert) as vtn:
            # The VTN's certificate fingerprint is not the one the VEN was given.
            settings = ven_settings(vtn, pki, ven=pki.ven, vtn_fingerprint=pki.stranger.fingerprint)
            async with running_csms(store, settings) as csms:
                event_id = dispatch(vtn, target_kw=TARGET_KW)
                await failing_while_planning(store, csms)
                assert not csms.ven.registered.is_set()
                assert event_id not in vtn.opts
                assert store.site_limits(datetime.now(UTC)) == {}
                assert [e for e in store.grid_events() if e.source == f"openadr:{VEN_NAME}"] == []
                assert store.vtn_events() == []
