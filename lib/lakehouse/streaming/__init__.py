"""The real-time path: payments from Kafka into the same Delta layers (issue 19)."""
