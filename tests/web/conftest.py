"""Fixtures of the web tests: all shared ones live in tests/conftest.py."""
