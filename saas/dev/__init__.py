"""Dev and test only: the embedded PostgreSQL, Redis and SMTP sink, the `saas dev` launcher, the demo seed."""
