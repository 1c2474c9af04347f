"""Fixtures for the security tests: the cyclic collector run less often."""

from tests.reliability.conftest import fewer_collections

__all__ = ["fewer_collections"]
