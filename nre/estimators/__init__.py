"""The estimator contract, the registry, and the job runner with its worker process."""
