"""Offline evaluation: protocols (splits), pure metrics, the runner and tuning."""
