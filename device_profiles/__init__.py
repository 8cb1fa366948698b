"""Device profiles (one YAML per phone) and shipped latency predictors."""
