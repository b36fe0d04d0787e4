"""dev/prereqs.sh: a missing system package is named, with the command, before any build starts."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "dev" / "prereqs.sh"


def run_without(tool: str, user: str | None = None) -> subprocess.CompletedProcess:
    """Runs prereqs.sh (build scope) with a PATH that has every tool it uses but `tool`."""
    with tempfile.TemporaryDirectory() as bindir:
        os.chmod(bindir, 0o755)
        for name in ["bash", "cc", "make", "pkg-config", "uname", "id", "cargo", "rustc",
                     "awk", "sort", "head", "printf", "sed", "apt-get"]:
            found = shutil.which(name)
            if found and name != tool:
                os.symlink(found, os.path.join(bindir, name))
        command = [os.path.join(bindir, "bash"), str(SCRIPT), "build"]
        if user:
            command = [shutil.which("runuser"), "-u", user, "--"] + command
        return subprocess.run(command, env={"PATH": bindir, "HOME": "/tmp"},
                              capture_output=True, text=True, timeout=60)


def test_not_root_names_the_package_and_the_command():
    if os.geteuid() != 0 or not shutil.which("runuser"):
        import pytest
        pytest.skip("needs root to run the script as another user")
    result = run_without("pkg-config", user="nobody")
    assert result.returncode == 1, result.stderr
    assert "pkg-config: finds OpenSSL" in result.stderr
    assert "not root" in result.stderr
    assert "Run: sudo apt-get install -y pkg-config" in result.stderr


def test_no_apt_names_the_package():
    # Without apt-get (another distribution) it must refuse clearly, root or not.
    with tempfile.TemporaryDirectory() as bindir:
        os.chmod(bindir, 0o755)
        for name in ["bash", "cc", "pkg-config", "uname", "id", "cargo", "rustc", "awk",
                     "sort", "head", "printf", "sed"]:
            found = shutil.which(name)
            if found:
                os.symlink(found, os.path.join(bindir, name))
        result = subprocess.run([os.path.join(bindir, "bash"), str(SCRIPT), "build"],
                                env={"PATH": bindir, "HOME": "/tmp"},
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "missing: make" in result.stderr
    assert "no apt-get" in result.stderr


def test_complete_machine_passes_quietly():
    result = subprocess.run(["bash", str(SCRIPT), "build"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stderr
