"""zdr: zero-downtime rollouts for Kubernetes (the ZeroDowntimeRollout operator)."""

__version__ = "0.1.0"
