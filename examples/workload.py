"""A small CPU-bound workload with recognisable function names, used by the examples."""

from __future__ import annotations


def fibonacci(n: int) -> int:
    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)


def checksum_lines(count: int) -> int:
    total = 0
    for i in range(count):
        total = (total * 31 + hash(f"line-{i}")) & 0xFFFFFFFF
    return total


def handle_request(size: int) -> int:
    return fibonacci(size) + checksum_lines(size * 1000)


def run_workload(requests: int = 20, size: int = 18) -> int:
    return sum(handle_request(size) for _ in range(requests))
