"""The one place errors are shaped (``batchfiles._errors``): redaction of every secret, in text and in
urllib3's logs, and the one-line descriptions of azure-core errors."""

from __future__ import annotations

import contextlib
import logging
import string
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from types import SimpleNamespace

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
from batchfiles import AuthenticationError, BatchFilesError, _errors, _throttle
from hypothesis import assume, given
from hypothesis import strategies as st

#: Secrets as storage makes them (base64, URL-encoded), without capitals: ``REDACTED`` is never part of one.
secrets = st.text(alphabet=string.ascii_lowercase + string.digits + "+/%", min_size=8, max_size=40)
keywords = st.sampled_from(["sig=", "SIG=", "AccountKey=", "accountkey=", "SharedAccessSignature="])


@contextlib.contextmanager
def registered(*values: str) -> Iterator[None]:
    """Only ``values`` registered while inside; what was registered before comes back after."""
    saved = set(_errors._secrets)
    _errors._secrets.clear()
    try:
        _errors.register_secrets(*values)
        yield
    finally:
        _errors._secrets.clear()
        _errors._secrets.update(saved)
        _errors.register_secrets()  # recomputes the lookup order of the restored set


@given(st.lists(st.tuples(st.text(max_size=20), secrets), min_size=1, max_size=4), st.text(max_size=20))
def test_registered_secrets_never_survive(pieces, tail):
    """Account keys and signatures registered from a connection string and a URL are gone from any text,
    wherever they stand, with or without a keyword before them."""
    keys = [secret for _, secret in pieces]
    conn = ";".join(f"AccountName=a;AccountKey={key}" for key in keys)
    url = "https://a.blob.core.windows.net/job-x?sv=2024&sr=c&sig=" + keys[0]
    text = "".join(filler + secret for filler, secret in pieces) + tail
    assume(
        not any(key in filler for key in keys for filler, _ in pieces) and not any(k in tail for k in keys)
    )
    with registered(conn, url):
        redacted = _errors.redact(text)
        assert not any(key in redacted for key in keys), redacted
        assert keys[0] not in _errors.redact(url) and "sv=2024" in _errors.redact(url)


@given(st.text(max_size=30), keywords, secrets, st.text(max_size=30))
def test_keyword_secrets_never_survive(prefix, keyword, value, suffix):
    """Whatever surrounds it, a value after ``sig=``, ``AccountKey=`` or ``SharedAccessSignature=`` (any case)
    is gone, unregistered, and the keyword stays to say what was there."""
    assume(value not in prefix + keyword and value not in suffix)
    with registered():
        redacted = _errors.redact(prefix + keyword + value + suffix)
    assert value not in redacted
    assert "REDACTED" in redacted


def test_a_registered_secret_cannot_break_a_keyword():
    """A registered secret that ends inside ``sig=`` would, replaced first, leave the signature behind."""
    with registered("AccountKey=abcdefgs"):
        assert "s3cr3tsignature" not in _errors.redact("xabcdefgsig=s3cr3tsignature&sv=1")


def test_short_registered_secrets_are_left_to_the_patterns():
    with registered("AccountKey=abc"):
        assert _errors.redact("abc def") == "abc def"
        assert _errors.redact("AccountKey=abc;") == "AccountKey=REDACTED;"


@given(st.text(max_size=20), secrets, secrets)
def test_the_urllib3_log_filter_redacts_messages_and_arguments(prefix, signature, key):
    """urllib3 logs URLs as arguments, and exceptions (whose ``%r`` holds the URL) too."""
    assume(signature not in prefix and key not in prefix and key not in signature)
    logger = logging.getLogger("urllib3.connectionpool")
    assert any(isinstance(f, _errors.RedactSecretsFilter) for f in logger.filters)
    record = logger.makeRecord(
        logger.name,
        logging.DEBUG,
        __file__,
        1,
        prefix + "%s %r %s",
        (f"GET /c/b?sv=1&sig={signature}", OSError(f"refused: /c?sig={signature}"), key),
        None,
    )
    with registered(f"AccountKey={key}"):
        assert all(f.filter(record) for f in logger.filters)
        message = record.getMessage()
    assert signature not in message and key not in message
    assert message.count("sig=REDACTED") == 2


def test_the_urllib3_log_filter_works_on_the_logger(caplog: pytest.LogCaptureFixture) -> None:
    with registered("AccountKey=k3yk3yk3yk3y"), caplog.at_level(logging.DEBUG, "urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").debug("%s %s", "/c?sig=s1gs1gs1g", "k3yk3yk3yk3y")
    assert "s1gs1gs1g" not in caplog.text and "k3yk3yk3yk3y" not in caplog.text
    assert "sig=REDACTED REDACTED" in caplog.text


def test_describe_is_one_redacted_line():
    assert _errors.describe(BatchFilesError("first\nsecond sig=abc")) == "first"
    assert _errors.describe(BatchFilesError("bad sig=abc&sv=1")) == "bad sig=REDACTED&sv=1"
    assert _errors.describe(ServiceRequestError("refused\nat /c?sig=abc")) == "cannot reach storage: refused"
    assert _errors.describe(ValueError("")) == "ValueError"


def test_describe_adds_a_credential_failure_from_the_context():
    """A credential that failed before any request is the context of what was raised: its first line is
    said too, once; an error raised ``from`` it already says it."""
    try:
        try:
            raise ClientAuthenticationError("no token\nEnvironmentCredential: sig=abc")
        except ClientAuthenticationError:
            raise AuthenticationError("storage refused access") from None
    except AuthenticationError as err:
        assert _errors.describe(err) == "storage refused access [no token]"
    try:
        try:
            raise ClientAuthenticationError("no token")
        except ClientAuthenticationError as auth:
            raise AuthenticationError("could not get a token: no token") from auth
    except AuthenticationError as err:
        assert _errors.describe(err) == "could not get a token: no token"


def test_a_credential_that_cannot_sign_in_says_where_to_sign_in():
    err = ClientAuthenticationError("\nno credential\nmore")
    text = str(_errors.translate_error(err, "job-x", "'a' in container 'job-x'"))
    assert text.startswith("no Azure sign-in for 'a' in container 'job-x': no credential (")
    assert "az login" in text and "more" not in text and "\n" not in text


# --- throttling: told apart from faults, and how long it asks to wait ---------------------------------------


def http_error(
    status: int, code: str | None = None, headers: dict[str, str] | None = None
) -> HttpResponseError:
    err = HttpResponseError(f"{status} {code}")
    err.status_code, err.error_code = status, code
    err.response = SimpleNamespace(headers=headers or {})  # what is read of a response: its headers
    return err


@pytest.mark.parametrize(
    ("status", "code", "throttling"),
    [
        (503, "ServerBusy", True),
        (503, None, True),
        (500, "OperationTimedOut", True),
        (429, None, True),
        (500, "InternalError", False),
        (502, None, False),
        (412, "ConditionNotMet", False),
        (403, "AuthenticationFailed", False),
    ],
)
def test_throttling_is_told_apart_from_faults(status: int, code: str | None, throttling: bool) -> None:
    err = http_error(status, code)
    assert _errors.is_throttling(err) is throttling
    assert _errors.is_transient(err) is (status >= 500 or status == 429)  # throttling is transient too
    assert not _errors.is_throttling(ServiceRequestError("refused"))


def test_retry_after_in_seconds_or_as_a_date_capped_and_never_negative_nor_malformed() -> None:
    def after(value: str) -> float | None:
        return _errors.retry_after(http_error(503, "ServerBusy", {"Retry-After": value}))

    assert after("1") == 1.0
    assert after(" 0.25 ") == 0.25
    assert after("-3") is None  # malformed: no delay is negative (a date in the past is 0, below)
    assert after("86400") == _throttle.MAX_RETRY_AFTER
    assert after("soon") is None and after("") is None and after("inf") is None and after("nan") is None
    in_ten = datetime.now(timezone.utc) + timedelta(seconds=10)
    assert 8 <= (after(format_datetime(in_ten, usegmt=True)) or 0) <= 10
    assert after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past
    assert _errors.retry_after(http_error(503)) is None  # no header
    assert _errors.retry_after(ServiceRequestError("refused")) is None  # no response


@given(st.text(max_size=40))
def test_any_retry_after_header_is_read_within_bounds_or_ignored(value: str) -> None:
    seconds = _errors.retry_after(http_error(503, "ServerBusy", {"Retry-After": value}))
    assert seconds is None or 0.0 <= seconds <= _throttle.MAX_RETRY_AFTER
