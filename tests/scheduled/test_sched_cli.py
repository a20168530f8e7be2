"""`saas jobs`: list, run through the ledger (twice is a no-op), history, and clear errors."""
from __future__ import annotations

from saas.cli.jobs import jobs_group


def test_jobs_list(runner):
    result = runner.invoke(jobs_group, ["list"])
    assert result.exit_code == 0
    for name in ("flag-expiring-cards", "remind-inactive-users", "purge-dormant-accounts", "finance-summary",
                 "reconcile-stripe"):
        assert name in result.output
    assert "0 6 * * *;0 6 1 * *" in result.output and "next " in result.output


def test_jobs_run_twice_does_nothing_the_second_time(runner):
    first = runner.invoke(jobs_group, ["run", "flag-expiring-cards", "--at", "2025-05-10T13:00:00+00:00"])
    assert first.exit_code == 0, first.output
    assert "slot 2025-05-10T00:00:00+00:00: succeeded" in first.output
    second = runner.invoke(jobs_group, ["run", "flag-expiring-cards", "--at", "2025-05-10T23:59:00"])
    assert second.exit_code == 0
    assert "already has a run" in second.output and "nothing done" in second.output
    history = runner.invoke(jobs_group, ["history", "flag-expiring-cards"])
    assert history.output.count("flag-expiring-cards") == 1 and "succeeded" in history.output


def test_jobs_run_dry_run_does_not_take_the_slot(runner):
    dry = runner.invoke(jobs_group, ["run", "purge-dormant-accounts", "--at", "2025-05-10", "--dry-run"])
    assert dry.exit_code == 0 and "(dry run): succeeded" in dry.output
    real = runner.invoke(jobs_group, ["run", "purge-dormant-accounts", "--at", "2025-05-10"])
    assert "succeeded" in real.output


def test_second_tuesday_schedule_via_cli(runner, monkeypatch):
    monkeypatch.setenv("SCHEDULE_FLAG_EXPIRING_CARDS", "0 1 8-14 * tue")  # the command reads its environment
    result = runner.invoke(jobs_group, ["run", "flag-expiring-cards", "--at", "2025-06-30T00:00:00+00:00"])
    assert "slot 2025-06-10T01:00:00+00:00" in result.output  # June's second Tuesday


def test_unknown_job_and_bad_date_fail_clearly(runner):
    unknown = runner.invoke(jobs_group, ["run", "flag-cards"])
    assert unknown.exit_code != 0 and "unknown job 'flag-cards'" in unknown.output
    bad = runner.invoke(jobs_group, ["run", "finance-summary", "--at", "yesterday"])
    assert bad.exit_code != 0 and "'yesterday' is not an ISO-8601" in bad.output
    assert runner.invoke(jobs_group, ["history", "nope"]).exit_code != 0


def test_a_future_slot_runs_only_with_force(runner):
    future = ["run", "purge-dormant-accounts", "--at", "2999-01-02T12:00:00+00:00"]
    refused = runner.invoke(jobs_group, future)
    assert refused.exit_code == 2 and "is in the future; add --force" in refused.output
    assert "No runs yet." in runner.invoke(jobs_group, ["history"]).output
    dry = runner.invoke(jobs_group, [*future, "--dry-run"])  # a preview changes nothing: allowed
    assert dry.exit_code == 0 and "(dry run): succeeded" in dry.output
    forced = runner.invoke(jobs_group, [*future, "--force"])
    assert forced.exit_code == 0 and "slot 2999-01-02T00:00:00+00:00: succeeded" in forced.output


def test_history_limit_must_be_positive(runner):
    result = runner.invoke(jobs_group, ["history", "--limit", "0"])
    assert result.exit_code == 2 and "'--limit'" in result.output
