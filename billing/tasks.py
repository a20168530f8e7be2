"""Celery tasks for slow Stripe calls and webhook processing."""
