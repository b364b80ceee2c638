"""Streamlit explorer: a thin shell over the library, one page per capability."""
