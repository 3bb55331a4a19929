"""Every page is a correct first request, also as a deep link to a freshly started server.

Streamlit runs the scripts in ``pages/`` directly (its first, folder-based multipage mode)
until ``app.py`` has run once and called ``st.navigation``: a first request for
``/negatives?run=…`` then shows a sidebar of file names, no icons and a narrow layout. Each page
calls :func:`through_app` first; outside ``app.py``'s navigation it switches Streamlit to it and
reruns, which runs ``app.py`` and, through it, the linked page with its query parameters.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError
from streamlit.runtime.pages_manager import PagesManager

__all__ = ["link_to", "through_app"]


def through_app() -> None:
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def link_to(page: str, label: str, *, icon: str | None = None, query_params: dict[str, str] | None = None) -> None:
    """A link to another page of the app, opened in this tab and session (``st.page_link``; a
    markdown link would open a new tab with a new session). Outside ``app.py``'s navigation (a page
    run on its own, as in the page tests) it is a plain relative link to the same address."""
    try:
        st.page_link(page, label=label, icon=icon, query_params=query_params)
    except StreamlitPageNotFoundError:
        stem = page.rsplit("/", 1)[-1].removesuffix(".py")
        query = f"?{urlencode(query_params, safe=',')}" if query_params else ""
        st.markdown(f"{icon + ' ' if icon else ''}[{label}]({stem}{query})")
