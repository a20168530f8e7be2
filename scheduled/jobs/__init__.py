"""The scheduled jobs, by their contract names; each is `job(session, ctx: RunContext)`."""
from scheduled.jobs.advance_dunning import advance_dunning
from scheduled.jobs.finance_summary import finance_summary
from scheduled.jobs.flag_expiring_cards import flag_expiring_cards
from scheduled.jobs.purge_dormant_accounts import purge_dormant_accounts
from scheduled.jobs.reconcile_stripe import reconcile_stripe
from scheduled.jobs.remind_inactive_users import remind_inactive_users

JOBS = {
    "flag-expiring-cards": flag_expiring_cards,
    "remind-inactive-users": remind_inactive_users,
    "purge-dormant-accounts": purge_dormant_accounts,
    "finance-summary": finance_summary,
    "reconcile-stripe": reconcile_stripe,
    "advance-dunning": advance_dunning,
}
