"""The in-container guard: a job ends when the host side that started it goes away."""

from __future__ import annotations

import subprocess
import sys
import time


def _guard(*cmd: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "benchpipe.runtime.guard", "--", *cmd],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_exit_status_passes_through():
    proc = _guard(sys.executable, "-c", "import sys; print('hi'); sys.exit(3)")
    out = proc.stdout.read()  # stdin stays open, as the engine keeps it while the host side lives
    assert proc.wait(timeout=60) == 3 and out == "hi\n"
    proc.stdin.close()


def test_closed_stdin_kills_the_job_and_what_it_started(tmp_path):
    marker = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen(['sleep', '300']); open({str(marker)!r}, 'w').write(str(p.pid));"
        "time.sleep(300)"
    )
    proc = _guard(sys.executable, "-c", script)
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    grandchild = int(marker.read_text())
    proc.stdin.close()  # what the engine does when `benchpipe run` dies
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 137
    assert "host side went away" in err
    time.sleep(0.2)
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(grandchild)], capture_output=True, text=True).stdout
    assert state.strip() in ("", "Z"), state  # gone, or a zombie awaiting its reaper


def test_no_command_is_a_usage_error():
    proc = _guard()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "usage" in err
