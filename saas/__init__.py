"""The SaaS billing maintenance service: web app, settings, database and command line."""
