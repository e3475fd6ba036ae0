"""tunnelpool benchmarks (see bench/README.md)."""
