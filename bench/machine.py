"""What a benchmark ran on: hardware, package versions and the git state, for every report."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version as _dist_version
from pathlib import Path

PACKAGES = ("jax", "jaxlib", "mujoco", "mujoco-mjx", "brax", "flax", "optax", "numpy", "scipy")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_bytes() -> int | None:
    """Physical memory of the machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def package_version(dist: str) -> str:
    """The installed version of a distribution, or 'unknown'."""
    try:
        return _dist_version(dist)
    except PackageNotFoundError:
        return "unknown"


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Python's and each package's version."""
    return {"python": platform.python_version(), **{d: package_version(d) for d in packages}}


def hardware(devices: list | None = None) -> dict:
    """The JAX devices in use (default: all of the default backend) and the host they run on."""
    import jax

    devices = list(devices) if devices is not None else jax.devices()
    return {"device_kind": devices[0].device_kind, "device_platform": devices[0].platform,
            "device_count": len(devices), "devices": [str(d) for d in devices],
            "local_device_count": jax.local_device_count(), "jax_backend": jax.default_backend(),
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "ram_bytes": ram_bytes(),
            "platform": platform.platform()}


def git_state() -> dict:
    """The commit of the working tree and whether tracked files differ from it (None outside git)."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
