"""Benchmarks: the nightly jobs over many accounts, the request path under load, email delivery."""
