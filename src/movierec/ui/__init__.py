"""The Streamlit app and its typed API client."""
