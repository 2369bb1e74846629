"""What machine is this? CPU model and ISA, cores, memory, GPU, Apple Silicon.

Detection never imports torch: a GPU is found through NVML (``nvidia-ml-py``) or
``nvidia-smi`` when present, and through torch only if the caller already imported it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

from pipetune.core.results import Machine

#: ISA flags worth reporting (from /proc/cpuinfo on Linux).
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
)


def detect_machine(threads: dict[str, Any] | None = None) -> Machine:
    """The host's facts, with the thread settings in force (``threads``)."""
    static = _static_facts()
    fingerprint = hashlib.sha256(
        "|".join(
            [
                static["cpu"],
                str(static["cores"]),
                str(static["logical_cores"]),
                str(static["gpu"]),
                static["os"],
            ]
        ).encode()
    ).hexdigest()[:16]
    return Machine(threads=dict(threads or {}), fingerprint=fingerprint, **static)


@functools.lru_cache(maxsize=1)
def _static_facts() -> dict[str, Any]:
    cpu, vendor, flags = _cpu_info()
    logical = os.cpu_count() or 1
    gpu, gpu_memory, capability = _gpu_info()
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    return {
        "cpu": cpu,
        "vendor": vendor,
        "cores": _physical_cores() or logical,
        "logical_cores": logical,
        "isa": tuple(flag for flag in ISA_FLAGS if flag in flags),
        "memory_gb": _memory_gb(),
        "gpu": gpu,
        "gpu_memory_gb": gpu_memory,
        "gpu_compute_capability": capability,
        "apple_silicon": apple,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _cpu_info() -> tuple[str, str, set[str]]:
    model, vendor, flags = platform.processor() or platform.machine(), "", set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    if sys.platform == "darwin":
        model = _sysctl("machdep.cpu.brand_string") or model
        vendor = "Apple" if "Apple" in model else vendor
    return model or "unknown", vendor, flags


def _physical_cores() -> int | None:
    try:
        pairs = set()
        physical = core = None
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    core = value.strip()
                    pairs.add((physical, core))
        return len(pairs) or None
    except OSError:
        value = _sysctl("hw.physicalcpu")
        return int(value) if value and value.isdigit() else None


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        value = _sysctl("hw.memsize")
        return round(int(value) / 1024**3, 1) if value and value.isdigit() else None
    return None


def _gpu_info() -> tuple[str | None, float | None, str | None]:
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(0)
                return (
                    props.name,
                    round(props.total_memory / 1024**3, 1),
                    f"{props.major}.{props.minor}",
                )
        except Exception:
            pass
    if shutil.which("nvidia-smi"):
        try:
            out = (
                subprocess.run(
                    [
                        "nvidia-smi",
                        "--query-gpu=name,memory.total,compute_cap",
                        "--format=csv,noheader,nounits",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                )
                .stdout.strip()
                .splitlines()
            )
            if out:
                name, memory, capability = (part.strip() for part in out[0].split(","))
                return name, round(float(memory) / 1024, 1), capability
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return None, None, None


def _sysctl(name: str) -> str | None:
    try:
        return (
            subprocess.run(
                ["sysctl", "-n", name], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None
