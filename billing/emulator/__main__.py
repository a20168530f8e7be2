"""`python -m billing.emulator --port P --webhook-url URL --webhook-secret S --data FILE`, `... trigger TYPE`, or
`... webhooks [--drop-share 0.3 [--seed N]]` (lose a share of webhook deliveries on purpose; show the state)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import requests
from werkzeug.serving import run_simple

from billing.emulator.api import create_app
from billing.emulator.objects import Account
from billing.emulator.sender import WebhookSender
from billing.emulator.store import OldStateFile, Store


def serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing.emulator", description="A loopback Stripe emulator.")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", help="where signed events are POSTed (none: events are not sent)")
    parser.add_argument("--webhook-secret", default="whsec_dev_emulator_secret")
    parser.add_argument("--data", type=Path, help="JSON file holding the state across restarts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        store = Store(args.data)
    except OldStateFile as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    app = create_app(store, Account(store, WebhookSender(args.webhook_url, args.webhook_secret)))
    run_simple("127.0.0.1", args.port, app, threaded=True)  # loopback only, by design
    return 0


def trigger(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing.emulator trigger",
                                     description="Make the emulator emit an event a real account sends on its own.")
    parser.add_argument("type", choices=["payment_method.automatically_updated", "invoice.payment_failed",
                                         "invoice.paid", "subscription.renewal"])
    parser.add_argument("--url", default=os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111"))
    parser.add_argument("--customer")
    parser.add_argument("--subscription")
    parser.add_argument("--payment-method")
    parser.add_argument("--exp-month", type=int)
    parser.add_argument("--exp-year", type=int)
    parser.add_argument("--last4")
    parser.add_argument("--decline-code", help="invoice.payment_failed: decline as the test card with this code")
    parser.add_argument("--until-card-changes", action="store_const", const="true",
                        help="invoice.payment_failed: every retry of the invoice is declined the same way until the "
                             "customer's default card changes")
    args = parser.parse_args(argv)
    fields = {k: v for k, v in vars(args).items() if k not in ("url",) and v is not None}
    key = os.environ.get("STRIPE_SECRET_KEY", "sk_test_emulator")
    response = requests.post(f"{args.url.rstrip('/')}/_emulator/trigger", data=fields, timeout=10,
                             headers={"Authorization": f"Bearer {key}"})
    print(json.dumps(response.json(), indent=2))
    return 0 if response.ok else 1


def webhooks(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing.emulator webhooks",
                                     description="Make the emulator lose a share of its webhook deliveries (the events "
                                                 "stay in GET /v1/events), or show what it dropped.")
    parser.add_argument("--drop-share", type=float, help="0 to 1: the share of deliveries to drop from now on")
    parser.add_argument("--seed", type=int, help="seed of the choice (the same seed drops the same deliveries)")
    parser.add_argument("--url", default=os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111"))
    args = parser.parse_args(argv)
    fields = {k: v for k, v in (("drop_share", args.drop_share), ("seed", args.seed)) if v is not None}
    key = os.environ.get("STRIPE_SECRET_KEY", "sk_test_emulator")
    response = requests.post(f"{args.url.rstrip('/')}/_emulator/webhooks", data=fields, timeout=10,
                             headers={"Authorization": f"Bearer {key}"})
    print(json.dumps(response.json(), indent=2))
    return 0 if response.ok else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["trigger"]:
        return trigger(argv[1:])
    if argv[:1] == ["webhooks"]:
        return webhooks(argv[1:])
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
