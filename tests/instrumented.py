"""Running a child under ``opentelemetry-instrument``, with entry points really registered.

Entry points come from installed distributions. When the package is installed
(``pip install -e '.[dev]'``) its own are used; otherwise a ``.dist-info``
built from pyproject.toml's ``[project.entry-points]`` is put on the child's
``PYTHONPATH``, which ``importlib.metadata`` reads the same way.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from support import ROOT

from otel_profiling.version import DISTRIBUTION

HOOK = "otel_profiling.auto_instrumentation:post_instrument"


def instrument_script() -> str:
    """The ``opentelemetry-instrument`` script installed next to this interpreter."""
    script = Path(sys.executable).parent / "opentelemetry-instrument"
    if not script.exists():
        raise RuntimeError(
            f"{script} not found: install the test extra (pip install -e '.[test]')."
        )
    return str(script)


def package_hook_installed() -> bool:
    eps = importlib.metadata.entry_points()
    group = eps.select(group="opentelemetry_post_instrument")
    return any(ep.value == HOOK for ep in group)


def write_distribution(
    where: Path, name: str, entry_points: Mapping[str, Mapping[str, str]]
) -> Path:
    """A minimal installed distribution (``.dist-info``) declaring ``entry_points``."""
    info = where / f"{name.replace('-', '_')}-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.0\n")
    lines: List[str] = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in entries.items())
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return where


def package_entry_points() -> Dict[str, Dict[str, str]]:
    """``[project.entry-points]`` from pyproject.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the test extra installs tomli there
        import tomli as tomllib

    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["entry-points"]


def instrumented_env(
    base: Dict[str, str], tmp_path: Path, extra_dist: Optional[Path] = None
) -> Dict[str, str]:
    """``base`` with the package's entry points (and ``extra_dist``) visible to the child."""
    paths: List[str] = []
    if extra_dist is not None:
        paths.append(str(extra_dist))
    if not package_hook_installed():
        paths.append(
            str(write_distribution(tmp_path / "dist", DISTRIBUTION, package_entry_points()))
        )
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    return env


def instrument_command(app: Path, *args: str, options: Sequence[str] = ()) -> List[str]:
    """``opentelemetry-instrument [options] python app [args]``."""
    return [instrument_script(), *options, sys.executable, str(app), *args]
