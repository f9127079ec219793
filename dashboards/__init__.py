"""The Streamlit dashboard over the results store (`evalsuite dashboard`); see app.py."""
