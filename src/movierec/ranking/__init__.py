"""Multi-stage recommendations: candidates, point-in-time features, learned ranker."""
