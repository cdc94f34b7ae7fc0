"""The one place errors are shaped (``batchfiles._errors``): redaction of every secret, in text and in
urllib3's logs, and the one-line descriptions of azure-core errors."""

from __future__ import annotations

import contextlib
import logging
import string
from collections.abc import Iterator

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from batchfiles import AuthenticationError, BatchFilesError, ConfigurationError, _errors
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


def test_sign_in_error_says_where_to_sign_in():
    err = _errors.sign_in_error(
        "https://acct.blob.core.windows.net/?sig=abc", ClientAuthenticationError("\nno credential\nmore")
    )
    assert isinstance(err, ConfigurationError)
    text = str(err)
    assert text.startswith(
        "no Azure sign-in for https://acct.blob.core.windows.net/?sig=REDACTED: no credential"
    )
    assert "az login" in text and "more" not in text and "\n" not in text
