"""The event stream: a dev broker, the at-least-once consumer, producers and simulated users."""
