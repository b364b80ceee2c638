"""What people touch: the CLI, HTML reports, figures and the Streamlit explorer."""
