"""The chaos suite (run with `python -m bench.chaos`); see bench/chaos/__main__.py."""
