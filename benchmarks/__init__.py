"""Benchmarks for speedysvc. A package so worker processes can import `benchmarks.bench_services`."""
