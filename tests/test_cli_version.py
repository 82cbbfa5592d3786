"""`benchpipe --version`: the installed distribution's version, the one manifests record."""

from __future__ import annotations

import subprocess
from importlib.metadata import version

import pytest

from benchpipe.cli import main
from benchpipe.package.manifest import tool_versions


def test_version_prints_the_installed_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"benchpipe {version('benchpipe')}\n"
    assert tool_versions()["benchpipe"] == version("benchpipe")  # what a tree's manifest says


def test_version_from_the_installed_command(cli_env):
    done = subprocess.run(["benchpipe", "--version"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"benchpipe {version('benchpipe')}\n", "")
