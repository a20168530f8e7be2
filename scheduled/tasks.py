"""Celery tasks for the nightly jobs: thin wrappers over the domain functions."""
