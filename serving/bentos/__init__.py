"""The BentoML service ``StockForecaster`` and its parts (schemas, auth, cache, model watcher)."""
