"""MLflow model registry: log and register the router, move aliases through guardrails."""
