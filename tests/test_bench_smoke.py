"""The benchmark harness still runs end to end on tiny data (no timings are asserted)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from saas.core.settings import ROOT


def _run_bench(tmp_path, only: str, *extra: str) -> dict:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SMTP_URL")}
    proc = subprocess.run([sys.executable, "-m", "bench", "--users", "300", "--repeat", "1", "--only", only,
                           "--duration", "2", "--json", str(out), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_help_works_without_services():
    proc = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "--users" in proc.stdout


def test_email_and_jobs_on_tiny_data(tmp_path):
    data = _run_bench(tmp_path, "email,jobs")
    stats = data["stats"]
    assert stats["email.outbox_rate"]["samples"] and stats["email.bare_smtplib_rate"]["samples"]
    for job in ("flag", "remind", "purge", "finance"):
        for variant in ("job", "floor", "naive_extrapolated", "peak_rss"):
            assert stats[f"jobs.{job}.{variant}"]["samples"], (job, variant)
    assert not [n for n in data["notes"] if "differ" in n], data["notes"]  # job and floor agree
    assert {c["verdict"] for c in data["checks"]} <= {"MET", "MISSED", "n/a"}


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (Debian package `wrk`)")
def test_request_path_on_tiny_data(tmp_path):
    data = _run_bench(tmp_path, "web")
    assert data["stats"]["web.dashboard.queries"]["samples"]
    assert data["stats"]["web.contact_post.rps"]["samples"]


def test_delivery_by_worker_processes_on_a_small_backlog(tmp_path):
    data = _run_bench(tmp_path, "delivery", "--messages", "250")
    for workers in (1, 2, 4):
        assert data["stats"][f"delivery.workers_{workers}"]["samples"]
        assert data["stats"][f"delivery.workers_{workers}.distinct"]["samples"] == [250]
