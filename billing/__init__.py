"""Cards, subscriptions, invoices, the Stripe gateway, webhooks, expiry rules and the Stripe emulator."""
