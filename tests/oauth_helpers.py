"""OAuth on Azurite for tests: a loopback HTTPS certificate and token credentials Azurite accepts.

Azurite's ``--oauth basic`` mode (HTTPS only) decodes the bearer token without checking its signature, so an
unsigned JWT (``alg: none``) passes as long as its claims look like Azure AD's (see :func:`unsigned_jwt`).
``Service_GetUserDelegationKey`` then derives the delegation key from the token's ``oid`` and ``tid``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The identity the tokens carry; a user delegation SAS names it in ``skoid`` / ``sktid``.
TENANT_ID = "72f988bf-0000-4000-8000-00000000a11e"
OBJECT_ID = "5e1f0b5a-0000-4000-8000-0000000b0b00"
#: Azurite accepts these audiences (plus the storage app id and ``https://ACCOUNT.blob.core.windows.net``);
#: the issuer only has to start with an Azure AD STS prefix.
AUDIENCE = "https://storage.azure.com"
ISSUER = f"https://sts.windows.net/{TENANT_ID}/"
STORAGE_SCOPE = "https://storage.azure.com/.default"


@dataclass(frozen=True)
class Certificate:
    """PEM files of a self-signed certificate for ``localhost`` and ``127.0.0.1``; ``cert`` is also the CA."""

    cert: str
    key: str


def loopback_certificate(folder: Path) -> Certificate:
    """Write a self-signed loopback certificate and its key (EC P-256, valid for a day) into ``folder``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "batchfiles test localhost")])
    now = datetime.now(timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        # Its own trust anchor: a CA that may sign (itself) and serve TLS, as strict verifiers want.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert=str(cert_path), key=str(key_path))


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned_jwt(lifetime: int = 3600, **claims: Any) -> tuple[str, int]:
    """(token, expires_on): an ``alg: none`` JWT that Azurite's basic OAuth accepts.

    Azurite requires ``iat``, ``nbf`` and ``exp`` (now within [nbf, exp]), an ``iss`` starting with an Azure
    AD STS prefix and a storage ``aud``; ``GetUserDelegationKey`` needs ``oid`` and ``tid`` too. ``claims``
    override or add claims (``None`` drops one).
    """
    now = int(time.time())
    payload: dict[str, Any] = {
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now - 300,
        "nbf": now - 300,  # allow for clock skew between the test and Azurite
        "exp": now + lifetime,
        "oid": OBJECT_ID,
        "tid": TENANT_ID,
        "sub": OBJECT_ID,
        "scp": "user_impersonation",
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    token = f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(payload)}."
    return token, int(payload.get("exp", now + lifetime))


class StaticTokenCredential:
    """An azure-core ``TokenCredential`` handing out :func:`unsigned_jwt` tokens; records requested scopes."""

    def __init__(self, **claims: Any) -> None:
        self.claims = claims
        self.scopes: list[tuple[str, ...]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(*unsigned_jwt(**self.claims))


class AsyncStaticTokenCredential:
    """The ``AsyncTokenCredential`` twin of :class:`StaticTokenCredential`."""

    def __init__(self, **claims: Any) -> None:
        self.claims = claims
        self.scopes: list[tuple[str, ...]] = []
        self.closed = False

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(*unsigned_jwt(**self.claims))

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> AsyncStaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
