"""`make install`'s sandbox step: installs bubblewrap as root with apt-get, else stops with the command.

The script runs with a PATH of fake tools (id, apt-get, bwrap), so every branch is taken
on any machine without touching its packages.
"""

import os
import subprocess

import pytest

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "install_sandbox_deps.sh"


def _tool(bin_dir, name, body):
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _run(bin_dir, **env):
    return subprocess.run(["/bin/sh", str(SCRIPT)], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), **env})


@pytest.fixture
def fake_bin(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    return bin_dir


def test_root_with_apt_installs_bubblewrap(fake_bin, tmp_path):
    log = tmp_path / "apt.log"
    _tool(fake_bin, "id", "echo 0")
    # the fake apt-get records its arguments and "installs" a bwrap that works
    _tool(fake_bin, "apt-get", f'echo "$@" >> {log}\n'
          f'[ "$1" = install ] && printf "#!/bin/sh\\nexit 0\\n" > {fake_bin}/bwrap && /bin/chmod +x {fake_bin}/bwrap\nexit 0')
    result = _run(fake_bin)
    assert result.returncode == 0, result.stderr
    assert "install -y -qq bubblewrap" in log.read_text()
    assert "cannot create a sandbox" not in result.stderr


def test_without_root_stops_with_the_exact_command(fake_bin):
    _tool(fake_bin, "id", "echo 1000")
    _tool(fake_bin, "apt-get", "echo should not run >&2; exit 1")
    result = _run(fake_bin)
    assert result.returncode == 1
    assert "sudo apt-get install -y bubblewrap" in result.stderr
    assert "should not run" not in result.stderr


def test_skip_goes_on_without_bubblewrap(fake_bin):
    _tool(fake_bin, "id", "echo 1000")
    result = _run(fake_bin, SANDBOX="skip")
    assert result.returncode == 0 and "SANDBOX=skip" in result.stderr


def test_present_bubblewrap_is_left_alone_but_a_broken_one_is_reported(fake_bin, tmp_path):
    log = tmp_path / "apt.log"
    _tool(fake_bin, "id", "echo 0")
    _tool(fake_bin, "apt-get", f'echo "$@" >> {log}')
    _tool(fake_bin, "bwrap", "exit 0")
    assert _run(fake_bin).returncode == 0 and not log.exists()
    _tool(fake_bin, "bwrap", "exit 1")  # e.g. user namespaces disabled in a container
    result = _run(fake_bin)
    assert result.returncode == 0 and "cannot create a sandbox" in result.stderr


def _dry_make(*args, **env):
    """`make -n` as on a fresh clone: every step printed (-B, even with a .venv already there)
    and no "Entering directory" lines, also when the suite itself runs under `make test`."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "-n", "-B", "--no-print-directory", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, env={**clean, **env})


def test_make_install_runs_the_sandbox_step_first():
    dry = _dry_make("install")
    lines = dry.stdout.splitlines()
    assert lines and "install_sandbox_deps.sh" in lines[0]


def test_torch_comes_from_the_cpu_index_only_without_a_gpu(tmp_path):
    def torch_line(path):
        dry = _dry_make("install", "SANDBOX=skip", "TORCH_INDEX_PROBE=true", PATH=path)  # the index answers
        return next(line for line in dry.stdout.splitlines() if "pip install" in line and "torch" in line)

    gpu_bin = tmp_path / "gpu-bin"
    gpu_bin.mkdir()
    _tool(gpu_bin, "nvidia-smi", "exit 0")
    system_path = "/usr/local/bin:/usr/bin:/bin"
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_line(system_path)
    assert "--index-url" not in torch_line(f"{gpu_bin}:{system_path}")


def test_an_unreachable_cpu_index_is_noticed_in_one_short_probe():
    """Offline or behind a mirror: one probe of at most 3 s, then pip's own index, with a note
    naming TORCH_INDEX (pip would otherwise retry the host ~200 times)."""
    import time

    system_path = "/usr/local/bin:/usr/bin:/bin"  # no nvidia-smi
    started = time.monotonic()
    # a non-routable address: the probe's timeout, not the network, decides how long this takes
    dry = _dry_make("install", "SANDBOX=skip", "TORCH_CPU_INDEX=http://10.255.255.1/whl/cpu", PATH=system_path)
    assert time.monotonic() - started < 10
    line = next(line for line in dry.stdout.splitlines() if "pip install" in line and "torch" in line)
    assert "--index-url" not in line
    assert "not reached in a 3 s probe" in dry.stderr and "TORCH_INDEX=" in dry.stderr
    assert "timeout=3" in (REPO_ROOT / "Makefile").read_text()
