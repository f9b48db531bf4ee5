"""Every OTEL_* variable the code reads is in the README's table and is an instrument option."""

from __future__ import annotations

import re
from pathlib import Path

import otel_profiling.environment_variables as documented

ROOT = Path(__file__).resolve().parent.parent
STANDARD = {"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"}
NOT_VARIABLES = {"OTEL_CTX"}  # the process context's mapping name and signature


def read_by_code() -> set:
    names: set = set()
    for path in (ROOT / "otel_profiling").rglob("*.py"):
        names.update(re.findall(r"[\"'](OTEL_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text()))
    return names - NOT_VARIABLES


def test_readme_table_lists_every_variable_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text()
    table = set(re.findall(r"^\| `(OTEL_[A-Z0-9_]+)`", readme, re.M))
    table |= set(re.findall(r"`(OTEL_[A-Z0-9_]+)`, `OTEL_", readme))
    code = read_by_code()
    assert code - table == set(), "read by the code but missing from the README table"
    assert table - code - STANDARD == set(), "in the README table but read by nothing"


def test_every_variable_is_an_opentelemetry_instrument_option() -> None:
    constants = {name for name in dir(documented) if name.startswith("OTEL_")}
    assert read_by_code() - STANDARD - constants == set()
