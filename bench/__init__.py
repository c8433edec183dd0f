"""Benchmarks: one module per area (`bench/<name>.py` with `main(argv=None)`), run by `python -m bench`."""
