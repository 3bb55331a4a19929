"""Suite-wide rule: a test that is skipped or expected to fail counts as a failure.

The test command promises exit code 0 only when every test ran and passed, so a skip (a
missing browser, package or device) must not pass silently. Tests that only make sense on
some machines are not collected elsewhere (e.g. ``DEVICES`` in ``test_data.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from page_runs import clear_caches, copy_runs


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or exitstatus != pytest.ExitCode.OK:
        return
    not_run = [r.nodeid for key in ("skipped", "xfailed") for r in reporter.stats.get(key, [])]
    if not_run:
        reporter.write_line(f"{len(not_run)} test(s) did not run and pass: " + ", ".join(not_run), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --------------------------------------------------------------------------------------------
# fixtures of the page tests that share the tiny runs of page_runs.py
# --------------------------------------------------------------------------------------------


@pytest.fixture
def streamlit_caches():
    """Fresh Streamlit caches around a test: they leak between AppTests (MEASURED.md)."""
    clear_caches()
    yield
    clear_caches()


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> dict[str, Path]:
    """A models folder of this test module's own: copies of the three tiny runs (SimCLR, HCL β=1, H-SCL β=1)."""
    return copy_runs(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture
def tiny_models(tiny_store, monkeypatch) -> dict[str, Path]:
    """``tiny_store``, made the app's models folder (``HCL_MODELS_DIR``)."""
    monkeypatch.setenv("HCL_MODELS_DIR", str(next(iter(tiny_store.values())).parent))
    return tiny_store
