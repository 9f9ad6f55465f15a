"""Load generators: wrk (the measuring tool) and a small Python fallback (smoke tests only)."""
