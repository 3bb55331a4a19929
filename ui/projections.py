"""The app's one UMAP service: started and warmed at the first request of any page.

Warming compiles UMAP's numba kernels on a background thread, so the first user who opens the
UMAP layout does not wait for the compilation (BENCHMARKS.md has the cost).
"""

from __future__ import annotations

import streamlit as st

from hcl_core.projection import ProjectionService

__all__ = ["projection_service"]


@st.cache_resource(show_spinner=False)
def projection_service() -> ProjectionService:
    """One UMAP worker per process, warmed at once so a user's first fit skips numba's compile.

    pandas is imported here, before the warm-up: ``import umap`` on the worker thread would import
    it there, and plotly (which looks pandas up in sys.modules without importing it) then meets a
    half-initialised module on the UI thread: "partially initialized module 'pandas'" crashes.
    """
    import pandas  # noqa: F401

    service = ProjectionService()
    service.warm_up()
    return service
