"""Task SAS: signing one (account key or user delegation key) for a time window; when one expires (its
``se=`` read from a URL or token) and the warning at start when that is within a margin (keyword,
``BATCHFILES_SAS_MARGIN``, or one hour); durations as the command line writes them (``30m``, ``12h``,
``1d12h``). Never shows a signature: only the expiry time is ever printed."""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

from azure.core.credentials import AzureSasCredential
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from .errors import ConfigurationError

logger = logging.getLogger("batchfiles")

#: The variable that sets the margin when no ``sas_margin=`` (or ``--sas-margin``) is given.
ENV_SAS_MARGIN = "BATCHFILES_SAS_MARGIN"
#: Warn at start when the SAS expires within this much time, unless told otherwise.
DEFAULT_MARGIN = timedelta(hours=1)
#: What to do about a SAS that expires too soon, said by the warning and by the error of an expired one.
ADVICE = (
    "make a SAS that outlasts the job (`batchfiles url JOB_ID --expiry 2d`) or use a managed identity "
    "(AZURE_STORAGE_ACCOUNT_URL or --account-url)"
)

_DURATION = re.compile(r"(?:\d+[smhdw])+")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, *, zero: bool = False) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``1w``, or a sum such as ``1d12h``; ``zero``: ``0`` is allowed
    too (and means none). :class:`ValueError` for anything else, or a duration of zero unless ``zero``."""
    compact = text.strip().lower().replace(" ", "") if isinstance(text, str) else ""
    if zero and compact == "0":
        return timedelta(0)
    if not compact or not _DURATION.fullmatch(compact):
        raise ValueError(
            f"not a duration: {text!r} (a number and a unit s, m, h, d or w, e.g. 30m, 12h, 7d, 1d12h"
            f"{'; 0 for none' if zero else ''})"
        )
    total = timedelta()
    try:
        for number, unit in _DURATION_PART.findall(compact):
            total += timedelta(**{_UNITS[unit]: int(number)})
    except OverflowError:
        raise ValueError(f"the duration is too long: {text!r}") from None
    if total <= timedelta(0) and not zero:
        raise ValueError(f"the duration must be positive, not {text!r}")
    return total


def sas_expiry(url_or_token: str | None) -> datetime | None:
    """When the SAS in a URL's query (or a bare SAS token) expires, in UTC; None when it holds no SAS
    or its ``se`` is not a time (the service would refuse it anyway)."""
    if not isinstance(url_or_token, str) or "se=" not in url_or_token:
        return None
    query = url_or_token.partition("?")[2] if "?" in url_or_token else url_or_token
    values = parse_qs(query.partition("#")[0]).get("se")
    if not values or len(values) != 1:
        return None
    text = values[0].strip().replace(" ", "+")  # an offset's unescaped "+" arrives as a space
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # not a time, or out of datetime's range once in UTC
        return None


def credential_sas(url: str, credential: Any = None) -> str | None:
    """The SAS a client uses: the URL's query, or a SAS token passed as its credential."""
    if isinstance(credential, str):
        return credential
    signature = getattr(credential, "signature", None)  # AzureSasCredential
    if isinstance(signature, str):
        return signature
    return url if isinstance(url, str) and "?" in url else None


def check_margin(value: timedelta | None) -> None:
    """Raise for a ``sas_margin=`` that is not None or a timedelta >= 0."""
    if value is None:
        return
    if not isinstance(value, timedelta):
        raise TypeError(f"sas_margin must be a timedelta, not {type(value).__name__}")
    if value < timedelta(0):
        raise ValueError(f"sas_margin must not be negative, not {value}")


def margin(value: timedelta | None = None) -> timedelta:
    """The margin: ``value`` if given, else ``BATCHFILES_SAS_MARGIN`` (a duration, ``0`` for none), else
    :data:`DEFAULT_MARGIN`. A bad variable is a :class:`~batchfiles.errors.ConfigurationError`."""
    check_margin(value)
    if value is not None:
        return value
    text = os.environ.get(ENV_SAS_MARGIN, "").strip()
    if not text:
        return DEFAULT_MARGIN
    try:
        return parse_duration(text, zero=True)
    except ValueError as err:
        raise ConfigurationError(f"{ENV_SAS_MARGIN}: {err}") from None


def utc_text(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _left(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def expiry_warning(what: str, expires: datetime, within: timedelta, now: datetime) -> str | None:
    """The warning for a SAS of ``what`` that expires at ``expires``, or None when it lasts beyond
    ``within`` from ``now``."""
    if expires - now > within:
        return None
    if expires <= now:
        return f"the SAS for {what} expired at {utc_text(expires)}: storage will refuse it; {ADVICE}"
    return (
        f"the SAS for {what} expires at {utc_text(expires)} (in {_left(expires - now)}): saves after "
        f"that will fail; {ADVICE}"
    )


def warn_if_expiring(what: str, url: str, credential: Any = None, within: timedelta | None = None) -> None:
    """Log a warning when the SAS of ``url`` (or the SAS token ``credential``) expires within the margin
    (``within``, else the variable, else an hour); nothing for a client without a SAS."""
    expires = sas_expiry(credential_sas(url, credential))
    if expires is None:
        return
    message = expiry_warning(what, expires, margin(within), datetime.now(timezone.utc))
    if message is not None:
        logger.warning("%s", message)


def expired(url_or_token: str | None, now: datetime | None = None) -> datetime | None:
    """The expiry of the SAS in ``url_or_token`` if it is past (at ``now``), else None."""
    expires = sas_expiry(url_or_token)
    if expires is None or expires > (now or datetime.now(timezone.utc)):
        return None
    return expires


# --- signing a task SAS ---------------------------------------------------------------------------------

#: The permissions of the container SAS handed to tasks: read, add, create, write, delete, list. Delete,
#: because storage cannot change a blob's type in place: a retried task's live log (an append blob) must
#: replace the block blob its first attempt left, and a ``save`` over a live log the other way round. Write
#: already lets a task overwrite any blob of the container; delete adds removing blobs, their snapshots,
#: and breaking a lease, which is accepted for the same blobs (batchfiles itself never deletes a blob that
#: has snapshots or a lease).
TASK_SAS_PERMISSIONS = ContainerSasPermissions(
    read=True, add=True, create=True, write=True, delete=True, list=True
)


#: Azure signs user delegation keys for at most 7 days.
MAX_DELEGATION_EXPIRY = timedelta(days=7)


def sas_signing(service: Any, expiry: timedelta) -> str | None:
    """The account key to sign a SAS with, or None to use a user delegation key; checks ``expiry``."""
    if not isinstance(expiry, timedelta):
        raise TypeError(f"expiry must be a timedelta, not {type(expiry).__name__}")
    if expiry <= timedelta(0):
        raise ValueError(f"expiry must be positive, not {expiry}")
    if expiry > datetime.max.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc) - timedelta(days=1):
        raise ValueError(f"expiry {expiry} would end after the year 9999")
    key = getattr(service.credential, "account_key", None)
    if key:
        return key
    if service.credential is None or isinstance(service.credential, (str, AzureSasCredential)):
        raise ValueError(
            "a task SAS is signed with the account key or an Azure AD credential; this client has a SAS: "
            "create it with a connection string, an account key or a token credential"
        )
    if expiry > MAX_DELEGATION_EXPIRY:
        raise ValueError(f"a user delegation SAS lasts at most 7 days, not {expiry}")
    return None


def task_sas_url(service: Any, container: str, signing_key: Any, start: datetime, end: datetime) -> str:
    """The container URL with a task SAS signed by an account key (str) or a user delegation key."""
    by_account = isinstance(signing_key, str)
    sas = generate_container_sas(
        service.account_name,
        container,
        account_key=signing_key if by_account else None,
        user_delegation_key=None if by_account else signing_key,
        permission=TASK_SAS_PERMISSIONS,
        start=start,
        expiry=end,
    )
    return f"{service.url.rstrip('/')}/{container}?{sas}"


def sas_window(expiry: timedelta, *, delegated: bool = False) -> tuple[datetime, datetime]:
    """(start, expiry) of a SAS valid for ``expiry`` from now; the start allows 5 minutes of clock skew.

    A user delegation key may last 7 days from the server's now: a delegated SAS ends 10 minutes early
    rather than be refused for a clock a little ahead.
    """
    now = datetime.now(timezone.utc)
    end = now + expiry
    if delegated:
        end = min(end, now + MAX_DELEGATION_EXPIRY - timedelta(minutes=10))
    return now - timedelta(minutes=5), end
