"""Suite-wide rule: a test that is skipped or expected to fail counts as a failure.

The test command promises exit code 0 only when every test ran and passed, so a skip (a
missing browser, package or device) must not pass silently. Tests that only make sense on
some machines are not collected elsewhere (e.g. ``DEVICES`` in ``test_data.py``).
"""

from __future__ import annotations

import pytest


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or exitstatus != pytest.ExitCode.OK:
        return
    not_run = [r.nodeid for key in ("skipped", "xfailed") for r in reporter.stats.get(key, [])]
    if not_run:
        reporter.write_line(f"{len(not_run)} test(s) did not run and pass: " + ", ".join(not_run), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
