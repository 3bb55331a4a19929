"""Computations behind the figures: numbers from runs and embeddings, no plotting, no streamlit."""
