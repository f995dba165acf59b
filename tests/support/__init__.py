"""Tooling shared by the tests and the benchmarks (bench/ imports `tests.support` too); not part of the product."""
