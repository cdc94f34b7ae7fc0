"""The tests' own guard: nothing resolves or reaches a host beyond loopback, and a managed-identity credential
(which the CLI's and the library's default credential try) fails fast on loopback instead of probing the
metadata endpoint."""

from __future__ import annotations

import os
import socket

import pytest
from azure.core.exceptions import ServiceRequestError


@pytest.mark.parametrize("host", ["example.com", "169.254.169.254", "10.0.0.1", "login.microsoftonline.com"])
def test_names_beyond_loopback_are_not_resolved(host):
    with pytest.raises(OSError, match="loopback"):
        socket.getaddrinfo(host, 443)


def test_loopback_still_resolves():
    assert socket.getaddrinfo("127.0.0.1", 80)
    assert socket.getaddrinfo("localhost", 80)


def test_managed_identity_points_at_loopback():
    from azure.identity import ManagedIdentityCredential

    assert os.environ["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")
    with pytest.raises(ServiceRequestError, match=r"127\.0\.0\.1"):  # refused there, not sent beyond
        ManagedIdentityCredential().get_token("https://storage.azure.com/.default")
