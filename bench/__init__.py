"""Load benchmarks of the gateway against its floors and baselines: `python -m bench` (see README.md)."""
