"""The recommendation service (FastAPI)."""
