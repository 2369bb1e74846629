"""What machine is this? CPU model and ISA, cores, memory, GPU, Apple Silicon.

Detection never imports torch: a GPU is found through NVML (``nvidia-ml-py``) or
``nvidia-smi`` when present, and through torch only if the caller already imported it.
Every source is optional and every probe is bounded (no probe may hang a profile), so a
fact that cannot be read is ``None`` rather than an error.

The parsing is split from the probing (:func:`parse_cpuinfo`, :func:`parse_nvidia_smi`,
:func:`parse_cgroup_cpu_max`) so that it is tested on recorded text from other machines.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import importlib.util
import math
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipetune.core.kernel.results import Machine

#: ISA flags worth reporting (from /proc/cpuinfo on Linux; ``Features`` on Arm).
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
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
    "neon",
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)

#: Arm "CPU part" numbers of server and laptop cores (implementer 0x41), for a model name
#: on machines whose /proc/cpuinfo has no "model name" line.
ARM_PARTS = {
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd40": "Neoverse-V1",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
    "0xd8e": "Neoverse-N3",
    "0xd84": "Neoverse-V3",
}
ARM_IMPLEMENTERS = {"0x41": "ARM", "0x61": "Apple", "0xc0": "Ampere", "0x48": "HiSilicon"}
#: CPUID vendor strings, as people say them.
X86_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says (one parse of it)."""

    model: str = ""
    vendor: str = ""
    flags: frozenset[str] = frozenset()
    physical_cores: int | None = None
    logical_cpus: int = 0


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU."""

    name: str
    memory_gb: float | None = None
    compute_capability: str | None = None
    driver: str | None = None


@dataclass(frozen=True)
class _GpuProbe:
    gpus: tuple[GpuInfo, ...] = ()
    source: str = ""


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
    info = _read_cpuinfo()
    logical = os.cpu_count() or info.logical_cpus or 1
    probe = _gpu_probe()
    first = probe.gpus[0] if probe.gpus else None
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    model, vendor = info.model, info.vendor
    physical = info.physical_cores or _sysfs_physical_cores()
    if sys.platform == "darwin":
        model = _sysctl("machdep.cpu.brand_string") or model
        vendor = "Apple" if "Apple" in model else (vendor or _darwin_vendor(model))
        physical = _int(_sysctl("hw.physicalcpu")) or physical
    return {
        "cpu": model or platform.processor() or platform.machine() or "unknown",
        "vendor": vendor,
        "cores": physical or logical,
        "logical_cores": logical,
        "isa": tuple(flag for flag in ISA_FLAGS if flag in info.flags)
        + (("neon",) if apple and "neon" not in info.flags else ()),
        "memory_gb": _memory_gb(),
        "gpu": first.name if first else None,
        "gpu_memory_gb": first.memory_gb if first else None,
        "gpu_compute_capability": first.compute_capability if first else None,
        "apple_silicon": apple,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "usable_cores": _usable_cores(logical),
        "numa_nodes": _numa_nodes(),
        "gpu_count": len(probe.gpus),
        "gpu_driver": first.driver if first else None,
    }


# -- parsing (pure functions, tested on recorded text) ------------------------------------


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse the text of ``/proc/cpuinfo`` (x86 or Arm).

    Physical cores are the distinct ``(physical id, core id)`` pairs, so hyper-threads are
    not counted twice; ``None`` when the file does not say (most Arm kernels, some VMs).
    """
    scan = _CpuinfoScan()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            scan.read(key.strip(), value.strip())
    return scan.info()


@dataclass
class _CpuinfoScan:
    """What parse_cpuinfo has read so far, one ``key: value`` line at a time."""

    model: str = ""
    vendor: str = ""
    implementer: str = ""
    part: str = ""
    flags: frozenset[str] = frozenset()
    processors: int = 0
    pairs: set[tuple[str, str]] = field(default_factory=set)
    physical_id: str = "0"

    def read(self, key: str, value: str) -> None:
        """Count a processor, pair a core id with its package, or read a description."""
        if key == "processor":
            self.processors += 1
            self.physical_id = "0"
        elif key == "physical id":
            self.physical_id = value
        elif key == "core id":
            self.pairs.add((self.physical_id, value))
        else:
            self._read_description(key, value)

    def _read_description(self, key: str, value: str) -> None:
        """Keep the first model, vendor, flags and Arm implementer/part (every processor
        repeats them)."""
        # "Hardware": older Arm kernels name the SoC there
        if key in ("model name", "Hardware") and not self.model:
            self.model = value
        elif key == "vendor_id" and not self.vendor:
            self.vendor = X86_VENDORS.get(value, value)
        elif key in ("flags", "Features") and not self.flags:
            self.flags = frozenset(value.split())
        elif key == "CPU implementer" and not self.implementer:
            self.implementer = value.lower()
        elif key == "CPU part" and not self.part:
            self.part = value.lower()

    def info(self) -> CpuInfo:
        """The parsed CpuInfo, naming an Arm CPU by implementer and part where no line did."""
        vendor, model = self.vendor, self.model
        if self.implementer and not vendor:
            vendor = ARM_IMPLEMENTERS.get(self.implementer, f"Arm implementer {self.implementer}")
        if not model and self.part:
            model = ARM_PARTS.get(self.part, f"Arm CPU part {self.part}")
        return CpuInfo(
            model=model,
            vendor=vendor,
            flags=self.flags,
            physical_cores=len(self.pairs) or None,
            logical_cpus=self.processors,
        )


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """Parse ``nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version
    --format=csv,noheader,nounits`` (one line per GPU; memory in MiB)."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if not parts or not parts[0]:
            continue
        memory = _float(parts[1]) if len(parts) > 1 else None
        capability = parts[2] if len(parts) > 2 and _looks_like_version(parts[2]) else None
        driver = parts[3] if len(parts) > 3 and parts[3] not in ("", "[N/A]") else None
        gpus.append(
            GpuInfo(
                name=parts[0],
                memory_gb=round(memory / 1024, 1) if memory is not None else None,
                compute_capability=capability,
                driver=driver,
            )
        )
    return gpus


def parse_cgroup_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"200000 100000"`` -> 2.0;
    ``"max 100000"`` -> ``None``: no quota)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = _float(parts[0]), _float(parts[1])
    if not quota or not period:
        return None
    return quota / period


def isa_summary(isa: Sequence[str]) -> str:
    """The vector and matrix extensions that matter for inference, in words:
    ``"AVX2, AVX-512 (VNNI, BF16)"``, ``"AVX2, AVX-512, AMX (INT8, BF16)"``, ``"NEON"``."""
    flags = set(isa)
    parts = []
    if "avx2" in flags:
        parts.append("AVX2" + (" + AVX-VNNI" if "avx_vnni" in flags else ""))
    elif "avx" in flags:
        parts.append("AVX")
    if "avx512f" in flags:
        parts.append(
            _with_extras(
                "AVX-512",
                flags,
                (("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16"), ("avx512_fp16", "FP16")),
            )
        )
    if "amx_tile" in flags:
        parts.append(
            _with_extras(
                "AMX", flags, (("amx_int8", "INT8"), ("amx_bf16", "BF16"), ("amx_fp16", "FP16"))
            )
        )
    if "asimd" in flags or "neon" in flags:
        parts.append(
            _with_extras(
                "NEON",
                flags,
                (
                    ("asimddp", "dotprod"),
                    ("i8mm", "I8MM"),
                    ("bf16", "BF16"),
                    ("sve", "SVE"),
                    ("sve2", "SVE2"),
                ),
            )
        )
    return ", ".join(parts) or "baseline x86-64/Arm (no AVX2, AVX-512 or NEON reported)"


def _with_extras(name: str, flags: set[str], extras: Sequence[tuple[str, str]]) -> str:
    """``name`` followed by the extensions of it that ``flags`` report, in brackets:
    ``"AVX-512 (VNNI, BF16)"`` (just ``name`` when none is)."""
    present = [label for flag, label in extras if flag in flags]
    return name + (f" ({', '.join(present)})" if present else "")


def has_int8_dot_product(isa: Sequence[str]) -> bool:
    """True when int8 matrix products have a fast path (VNNI, AMX-INT8, Arm dotprod/I8MM).
    Without one, int8 kernels widen to 16 bits and often lose to fp32."""
    return bool(set(isa) & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


def has_bf16(isa: Sequence[str]) -> bool:
    """True when the CPU computes in bf16 natively (AVX512-BF16, AMX-BF16, Arm BF16)."""
    return bool(set(isa) & {"avx512_bf16", "amx_bf16", "bf16"})


def describe_machine(machine: Machine) -> list[tuple[str, str]]:
    """Rows for ``pipetune plugins`` and reports: (what, value), in reading order."""
    cores = f"{machine.cores} physical cores, {machine.logical_cores} logical CPUs"
    if machine.usable_cores is not None and machine.usable_cores < machine.logical_cores:
        cores += f" ({machine.usable_cores:g} usable by this process)"
    if machine.numa_nodes and machine.numa_nodes > 1:
        cores += f", {machine.numa_nodes} NUMA nodes"
    rows = [
        ("CPU", f"{machine.cpu}" + (f" ({machine.vendor})" if machine.vendor else "")),
        ("Cores", cores),
        ("ISA", isa_summary(machine.isa)),
        ("Memory", f"{machine.memory_gb:g} GiB" if machine.memory_gb else "unknown"),
    ]
    if machine.gpu:
        gpu = machine.gpu
        if machine.gpu_count > 1:
            gpu = f"{machine.gpu_count} x {gpu}"
        details = [
            f"{machine.gpu_memory_gb:g} GiB" if machine.gpu_memory_gb else "",
            f"compute capability {machine.gpu_compute_capability}"
            if machine.gpu_compute_capability
            else "",
            f"driver {machine.gpu_driver}" if machine.gpu_driver else "",
        ]
        details = [d for d in details if d]
        rows.append(("GPU", gpu + (f" ({', '.join(details)})" if details else "")))
    elif machine.apple_silicon:
        rows.append(("GPU", "Apple Silicon (Metal / Neural Engine, unified memory)"))
    else:
        rows.append(("GPU", "none detected"))
    rows.append(("OS", f"{machine.os}, Python {machine.python}"))
    if machine.threads:
        rows.append(("Threads", ", ".join(f"{k}={v}" for k, v in machine.threads.items())))
    return rows


# -- probing (bounded, never raises) ------------------------------------------------------


def _read_cpuinfo() -> CpuInfo:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return parse_cpuinfo(handle.read())
    except OSError:
        return CpuInfo()


def _sysfs_physical_cores() -> int | None:
    """Distinct (package, core) pairs from sysfs, for kernels whose cpuinfo omits them."""
    pairs = set()
    for folder in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology"):
        try:
            with open(os.path.join(folder, "core_id")) as core:
                core_id = core.read().strip()
            with open(os.path.join(folder, "physical_package_id")) as package:
                package_id = package.read().strip()
        except OSError:
            continue
        pairs.add((package_id, core_id))
    return len(pairs) or None


def _usable_cores(logical: int) -> float:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (a
    container limited to 2 CPUs on a 64-core host must not size thread pools for 64)."""
    try:
        usable: float = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = logical
    for path in ("/sys/fs/cgroup/cpu.max",):
        try:
            with open(path) as handle:
                quota = parse_cgroup_cpu_max(handle.read())
        except OSError:
            continue
        if quota is not None:
            usable = min(usable, max(1.0, quota))
    try:  # cgroup v1
        with (
            open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as q,
            open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as p,
        ):
            quota_us, period_us = _float(q.read()), _float(p.read())
        if quota_us and quota_us > 0 and period_us:
            usable = min(usable, max(1.0, quota_us / period_us))
    except OSError:
        pass
    return int(usable) if float(usable).is_integer() else round(usable, 2)


def _numa_nodes() -> int | None:
    nodes = glob.glob("/sys/devices/system/node/node[0-9]*")
    return len(nodes) or None


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        value = _int(_sysctl("hw.memsize"))
        return round(value / 1024**3, 1) if value else None
    return None


def _gpu_probe() -> _GpuProbe:
    """NVIDIA GPUs, from the cheapest source that answers: torch (only when the caller
    already imported it), NVML, then ``nvidia-smi``."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                gpus = []
                for index in range(torch.cuda.device_count()):
                    props = torch.cuda.get_device_properties(index)
                    gpus.append(
                        GpuInfo(
                            props.name,
                            round(props.total_memory / 1024**3, 1),
                            f"{props.major}.{props.minor}",
                        )
                    )
                driver = _nvml_gpus()
                if driver and driver[0].driver:
                    gpus = [
                        GpuInfo(g.name, g.memory_gb, g.compute_capability, driver[0].driver)
                        for g in gpus
                    ]
                return _GpuProbe(tuple(gpus), "torch")
        except Exception:  # a broken CUDA install must not break detection
            pass
    gpus = _nvml_gpus()
    if gpus:
        return _GpuProbe(tuple(gpus), "nvml")
    gpus = _nvidia_smi_gpus()
    if gpus:
        return _GpuProbe(tuple(gpus), "nvidia-smi")
    return _GpuProbe()


def _nvml_gpus() -> list[GpuInfo]:
    if importlib.util.find_spec("pynvml") is None:
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library: no NVIDIA GPU here
        return []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(pynvml.nvmlDeviceGetName(handle))
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 1024**3
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                capability: str | None = f"{major}.{minor}"
            except Exception:
                capability = None
            gpus.append(GpuInfo(name, round(memory, 1), capability, driver))
        return gpus
    except Exception:
        return []
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _nvidia_smi_gpus() -> list[GpuInfo]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,memory.total,compute_cap,driver_version",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out)


def _sysctl(name: str) -> str | None:
    if not shutil.which("sysctl"):
        return None
    try:
        return (
            subprocess.run(
                ["sysctl", "-n", name], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _darwin_vendor(model: str) -> str:
    return "Intel" if "Intel" in model else ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(text: str | None) -> float | None:
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _int(text: str | None) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _looks_like_version(text: str) -> bool:
    head, _, tail = text.partition(".")
    return head.isdigit() and tail.isdigit()
