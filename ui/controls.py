"""Widgets built from ``FIELDS``: every control takes its range, choices and help from the config table.

A page chooses the widget's look (a slider over the usual range, a select slider over a few
steps, a menu with labels); the allowed values always come from :data:`hcl_core.config.FIELDS`,
so a value the command line accepts is one the page accepts. A slider may show a narrower range
than the field allows: a value outside it (from a link) is then shown in a number input over the
field's whole range instead, so the page opens and trains what the link says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from hcl_core.config import FIELDS

__all__ = ["KEY", "field_control", "field_help", "keep_across_pages"]

KEY = "cfg_"  # session-state prefix of the config widgets


def keep_across_pages(*keys: str) -> None:
    """Keep the widgets ``keys``' values while a run does not draw them; call before drawing them.

    Streamlit forgets a widget's value in a run that does not draw it: another page, or a
    control the chosen loss hides (after switching from HCL to H-SCL, the hidden τ⁺ would be gone
    and the configuration incomplete). Each drawn value is kept aside under ``<key>_saved`` and
    put back when the widget is drawn again.

    Each drawn value is also assigned to itself: a value the page set in an earlier run (put back
    while hidden) then reaches the browser with the widget. Without it, a slider shown again after
    being hidden displayed its minimum and sent that back with the next click (after a SimCLR run,
    HCL's β and τ⁺ became 0 at the next Start).
    """
    for key in keys:
        saved = key + "_saved"
        if key in st.session_state:
            st.session_state[saved] = st.session_state[key] = st.session_state[key]
        elif saved in st.session_state:
            st.session_state[key] = st.session_state[saved]


def field_help(name: str, extra: str = "") -> str:
    spec = FIELDS[name]
    return f"{spec.help} Allowed: {spec.describe_range()}.{' ' + extra if extra else ''}"


def _number_input(container: Any, name: str, label: str, help: str, step: float | None) -> Any:
    spec = FIELDS[name]
    key = KEY + name
    if spec.type is int:
        return container.number_input(
            label, min_value=None if spec.low is None else int(spec.low),
            max_value=None if spec.high is None else int(spec.high), step=int(step or 1), key=key, help=help,
            placeholder="all" if spec.optional else None)
    return container.number_input(label, min_value=spec.low, max_value=spec.high, step=step, format="%g", key=key,
                                  help=help)


def field_control(
    container: Any,
    name: str,
    label: str,
    *,
    slider: tuple[float, float, float] | None = None,
    steps: Sequence[float] | None = None,
    step: float | None = None,
    format_func: Callable[[Any], str] | None = None,
    help_extra: str = "",
    on_change: Callable[[], None] | None = None,
) -> Any:
    """Draw the control of field ``name`` (value in ``st.session_state[KEY + name]``) and return its value.

    Args:
        container: ``st``, ``st.sidebar`` or an expander.
        slider: ``(low, high, step)`` of a slider over the usual range; values outside it fall
            back to a number input over the field's full range.
        steps: the stops of a select slider (the current value is added, so any valid value stays).
        step: the increment of a number input.
        format_func: how a choice or step is shown.
        on_change: called when the user changes a menu's choice (before the page reruns).
    """
    spec = FIELDS[name]
    key = KEY + name
    value = st.session_state.get(key)
    help = field_help(name, help_extra)
    if spec.choices is not None:
        return container.selectbox(label, spec.choices, key=key, help=help, format_func=format_func or str,
                                   on_change=on_change)
    if spec.type is bool:
        return container.checkbox(label, key=key, help=help)
    if spec.type is str:
        return container.text_input(label, key=key, help=help)
    if steps is not None and value is not None:
        stops = sorted({*steps, value})
        return container.select_slider(label, stops, key=key, help=help, format_func=format_func or str)
    if slider is not None:
        low, high, slider_step = slider
        if value is not None and low <= value <= high:
            return container.slider(label, low, high, step=slider_step, key=key, help=help)
        help = (f"{help} This value lies outside the slider's usual {low:g}–{high:g}; type a value in it "
                "to get the slider back.")
    return _number_input(container, name, label, help, step)
