"""Traffic probers, rollout scenarios, the benchmark (`make bench`) and the demo (`make demo`)."""
