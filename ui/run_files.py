"""The Compare page's "Run files" tab: download a run as a zip bundle, import a bundle.

Both go through :mod:`hcl_core.bundle`: an export holds the run's own files only, and an
import is checked (names, sizes, content, no pickle) before it lands in a new folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from hcl_core.bundle import export_run, import_bundle
from hcl_core.store import RunFileError
from ui import all_runs, models_root, run_labels, runs_with_warnings


def bundle_bytes(run_dir: Path) -> bytes:
    """The run's bundle, built in a temporary folder (nothing is written next to the run)."""
    with tempfile.TemporaryDirectory(prefix="hcl-export-") as tmp:
        return export_run(run_dir, Path(tmp) / "run.zip").read_bytes()


def import_uploaded(name: str, data: bytes, root: Path) -> Path:
    """Import an uploaded bundle under ``root``; :class:`~hcl_core.store.RunFileError` if refused."""
    with tempfile.TemporaryDirectory(prefix="hcl-import-") as tmp:
        path = Path(tmp) / (Path(name).name or "bundle.zip")
        path.write_bytes(data)
        return import_bundle(path, root)


def _download_section() -> None:
    runs = all_runs()
    if not runs:
        st.info("No runs to download yet.")
        return
    by_id = {r.run_id: r for r in runs}
    labels = run_labels(runs)
    chosen = by_id[st.selectbox("Run to download", list(by_id), key="files_run", format_func=labels.__getitem__)]
    if chosen.state == "running":
        st.caption("This run is still training: its bundle can be downloaded once it has ended.")
        return
    st.download_button("⬇ Run bundle (.zip)", lambda: bundle_bytes(chosen.path), file_name=f"{chosen.run_id}.zip",
                       mime="application/zip", key="files_download", on_click="ignore",
                       help="The run's configuration, event log, status, snapshots and checkpoint: everything the "
                            "app and `python -m hcl_core import` need to show the run elsewhere.")


def _import_section() -> None:
    uploaded = st.file_uploader("Import a run bundle", type=["zip"], key="files_upload",
                                help="A zip written by this app or `python -m hcl_core export`. It is checked "
                                     "before anything is saved and never replaces an existing run.")
    if uploaded is None:
        return
    if st.session_state.get("files_imported") == uploaded.file_id:
        return  # this upload was handled in an earlier rerun: importing it again would duplicate it
    st.session_state["files_imported"] = uploaded.file_id
    try:
        path = import_uploaded(uploaded.name, uploaded.getvalue(), models_root())
    except (RunFileError, OSError) as e:
        st.error(f"The bundle was not imported: {e}")
        return
    runs_with_warnings.clear()
    st.success(f"Imported as `{path.name}`: it is in the run lists of every page now.")


def render_run_files() -> None:
    st.markdown("Share runs between machines: download one as a zip, import one you were given. "
                f"Imported runs are saved in `{models_root()}/`.")
    left, right = st.columns(2)
    with left:
        _download_section()
    with right:
        _import_section()
