"""A loopback stand-in for the subset of Stripe the gateway uses (dev and tests only)."""
