"""The distribution's name, license and install lines: one name, used everywhere it is printed."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import venv
from pathlib import Path

from support import ROOT

import otel_profiling
from otel_profiling.version import DISTRIBUTION, __version__, install_command

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli there
    import tomli as tomllib

BOOTSTRAP = Path(otel_profiling.__file__).parent / "cli" / "bootstrap"


def test_pyproject_names_the_distribution_and_an_spdx_license() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "otel-profiling-agent"
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert project["scripts"]["otel-profiling"] == "otel_profiling.__main__:main"


def test_installed_metadata_matches_the_package() -> None:
    metadata = importlib.metadata.metadata(DISTRIBUTION)
    assert metadata["Name"] == DISTRIBUTION
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "Apache-2.0"


def test_install_command_names_the_distribution_and_the_extra() -> None:
    assert install_command("dask") == "pip install 'otel-profiling-agent[dask]'"


def test_every_install_line_in_the_readme_names_the_distribution() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = re.findall(r"pip install '?([A-Za-z][\w.-]*)", readme)
    assert lines, "the README shows how to install"
    assert set(lines) == {DISTRIBUTION}, sorted(set(lines))
    assert "cannot be installed in the same" in readme


def test_run_bootstrap_without_the_package_says_what_to_install(tmp_path: Path) -> None:
    """An interpreter without the package runs its program and names the distribution."""
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)
    python = bare / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", "print('program ran')"],
        env={"PYTHONPATH": str(BOOTSTRAP), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "program ran\n"
    assert "profiling not started: No module named 'otel_profiling'" in result.stderr
    assert f"(install {DISTRIBUTION} into {python}'s environment)" in result.stderr
