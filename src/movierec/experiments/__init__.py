"""Online experiments: deterministic assignment, A/B tests, interleaving, online metrics."""
