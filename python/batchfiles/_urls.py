"""Storage URLs and clients: container and account URL checks (never a SAS in clear text to another
machine), URLs without secrets for messages, and the client options (retries) batchfiles uses."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from azure.core.credentials import AzureSasCredential

from . import _throttle
from ._errors import redact

#: azure-storage-blob waits 15 s before its first retry by default (then 18, 24, ...): output and logs
#: want faster ones. Storage's ExponentialRetry waits initial_backoff + increment_base ** n before retry n:
#: here about 1.8, 2.6, 3.7, 5.4 and 7.9 s (±0.3), some 21 s in all before an error is raised. Throttled
#: answers have their own, longer budget (:mod:`batchfiles._throttle`).
RETRY_DEFAULTS: dict[str, Any] = {
    "retry_total": 5,
    "initial_backoff": 0.3,
    "increment_base": 1.5,
    "random_jitter_range": 0.3,
}


def client_kwargs(user: dict[str, Any], *, aio: bool = False) -> dict[str, Any]:
    """Client options: the fast retry defaults, overridden by what the caller passed, in a retry policy that
    absorbs throttling (:func:`_throttle.retry_policy`; ``aio``: for an async client) unless the caller
    passed a ``retry_policy`` of their own. ``retry_throttled`` (retries of a throttled request) and
    ``on_throttled`` (called, from any thread, at each throttled answer to the client's requests; what it
    raises is logged and ignored) are ours: they never reach azure-storage-blob."""
    merged = {**RETRY_DEFAULTS, **user}
    on_throttled = merged.pop("on_throttled", None)
    if on_throttled is not None and not callable(on_throttled):
        raise TypeError(f"on_throttled must be callable, not {on_throttled!r}")
    options = {name: value for name, value in merged.items() if name != "retry_throttled"}
    if options.get("retry_policy") is None:
        options["retry_policy"] = _throttle.retry_policy(merged, user_total="retry_total" in user, aio=aio)
    elif on_throttled is not None:
        raise ValueError("on_throttled needs batchfiles' retry policy: it cannot be given with retry_policy")
    if on_throttled is not None:
        options["retry_policy"].add_listener(on_throttled, weak=False)
    return options


def public_url(url: str) -> str:
    """``url`` without its query or anything that looks like a secret, so a SAS signature never reaches a
    message, log or ``repr``; a text that is not a URL at all (a bare SAS token) says only that."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL": keep only what comes before any query
        return redact(url.partition("?")[0])
    if not parts.scheme and "=" in parts.path:  # a bare query string ("sv=...&sig=..."), not a URL
        return "(a SAS token, not a URL)"
    netloc = parts.netloc.rpartition("@")[2]  # never a user name or password
    return redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def _is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def check_account_url(url: str) -> None:
    """Refuse an account URL that is not ``http(s)://host...`` before any credential is asked for it."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        hostname = None
    if hostname is None or parts.scheme not in ("http", "https"):
        raise ValueError(f"not a storage account URL: {public_url(url)!r}")


#: A container name: 3 to 63 lowercase letters, digits and single hyphens, starting and ending with either.
_CONTAINER_NAME = re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(?:-[a-z0-9]+)*")


def check_container_url(url: str, credential: Any = None) -> None:
    """Refuse URLs that cannot be a container, and SAS tokens sent in clear text to another machine."""
    if not isinstance(url, str):
        raise TypeError(f"container_url must be a str, not {type(url).__name__}")
    try:
        check_account_url(url)
    except ValueError:
        raise ValueError(f"not a container URL: {public_url(url)!r}") from None
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    segments = [unquote(segment) for segment in parts.path.strip("/").split("/")]
    # Azure's own endpoints name the account in the host; emulators and custom endpoints in the path.
    most = 1 if ".blob.core." in hostname.lower() else 2
    if not _CONTAINER_NAME.fullmatch(segments[-1]) or len(segments) > most:
        raise ValueError(
            f"not a container URL: {public_url(url)!r} (its path must end with the container's name, "
            "such as job-..., and hold nothing after it: not a blob's URL)"
        )
    sas = "sig=" in parts.query.lower() or isinstance(credential, (str, AzureSasCredential))
    if parts.scheme == "http" and sas and not _is_loopback(hostname):
        raise ValueError(
            f"refusing to send a SAS over plain http to {hostname}: use https "
            "(plain http is accepted only for loopback emulators such as Azurite)"
        )
