"""The bottom layer: settings, database, models, outbox and mail, Redis, task queueing, cron slots. No Flask, no billing, no scheduled."""
