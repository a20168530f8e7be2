"""axe-core in the browser tests: the npm package (tests/browser/package.json pins it), injected into a page.

`npm ci` in tests/browser installs it (CI does; a missing npm skips these checks with the reason).
"""
from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


@lru_cache(maxsize=1)
def axe_source() -> str:
    """axe.min.js, installed from the lock file on first use."""
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("axe-core is not installed and npm is not available: run `npm ci` in tests/browser")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, capture_output=True, timeout=300)
    return AXE.read_text()


def axe_violations(page) -> list[dict]:
    """Run axe on the page once it has loaded (contrast needs its stylesheet); the serious and critical violations,
    one dict each."""
    page.wait_for_load_state("load")
    page.add_script_tag(content=axe_source())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]),
             "targets": [n["target"] for n in v["nodes"][:3]]}
            for v in result["violations"] if v["impact"] in BLOCKING]


def page_width_overflow(page) -> int:
    """How many CSS pixels the page is wider than its window (0: it does not scroll sideways), once it has loaded:
    measured while its stylesheet is still on the way, a stacked table is as wide as its unstyled columns."""
    page.wait_for_load_state("load")
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
