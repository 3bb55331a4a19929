"""Every page is a correct first request, also as a deep link to a freshly started server.

Streamlit runs the scripts in ``pages/`` directly (its first, folder-based multipage mode)
until ``app.py`` has run once and called ``st.navigation``: a first request for
``/negatives?run=…`` then shows a sidebar of file names, no icons and a narrow layout. Each page
calls :func:`through_app` first; outside ``app.py``'s navigation it switches Streamlit to it and
reruns, which runs ``app.py`` and, through it, the linked page with its query parameters.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

__all__ = ["through_app"]


def through_app() -> None:
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
