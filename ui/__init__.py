"""Streamlit helpers shared by the pages: the string catalogues and cached loaders. UI only."""
