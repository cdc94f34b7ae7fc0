"""Azurite behind a strict fault proxy, as the tests see it in the strict pass (``BATCHFILES_TEST_STRICT=1``)
and where a test runs against both."""

from __future__ import annotations

from batchfiles.testing import Azurite
from faultproxy import FaultProxy


class StrictAzurite(Azurite):
    """Azurite as the tests see it in the strict pass: ``port``, ``account_url``, ``connection_string`` and
    ``credential`` lead to ``proxy``, a strict :class:`FaultProxy` in front of ``upstream``, the real
    Azurite (whose own ``connection_string`` bypasses the strict rules). Started and stopped by the
    ``azurite`` fixture, not by :meth:`start`/:meth:`stop`."""

    def __init__(self, upstream: Azurite, proxy: FaultProxy) -> None:
        super().__init__()
        self.upstream, self.proxy = upstream, proxy
        self.port = proxy.port

    def start(self) -> StrictAzurite:
        raise RuntimeError("StrictAzurite is started by the azurite fixture")
