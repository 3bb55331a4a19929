"""Computations behind the figures (no plotting, no streamlit): tables, neighbours, weight statistics."""
