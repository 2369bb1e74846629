"""Hardware detection: parsing recorded /proc/cpuinfo, nvidia-smi and cgroup text, and the
live probe on this machine."""

from __future__ import annotations

import json

from pipetune.core.kernel.results import Machine
from pipetune.core.runtime import machine as machine_mod
from pipetune.core.runtime.machine import (
    describe_machine,
    detect_machine,
    has_bf16,
    has_int8_dot_product,
    isa_summary,
    parse_cgroup_cpu_max,
    parse_cpuinfo,
    parse_nvidia_smi,
)

SPR_FLAGS = (
    "fpu sse4_2 avx avx2 fma f16c avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 "
    "avx_vnni amx_tile amx_int8 amx_bf16"
)


def _x86_block(processor: int, physical: int, core: int, flags: str, model: str, vendor: str):
    return (
        f"processor\t: {processor}\nvendor_id\t: {vendor}\nmodel name\t: {model}\n"
        f"physical id\t: {physical}\nsiblings\t: 4\ncore id\t\t: {core}\ncpu cores\t: 2\n"
        f"flags\t\t: {flags}\n\n"
    )


def test_parse_cpuinfo_counts_physical_cores_not_hyperthreads():
    # Two sockets x two cores x two hyper-threads = 8 logical CPUs, 4 physical cores.
    blocks = []
    processor = 0
    for physical in (0, 1):
        for _thread in (0, 1):
            for core in (0, 1):
                blocks.append(
                    _x86_block(
                        processor,
                        physical,
                        core,
                        SPR_FLAGS,
                        "Intel(R) Xeon(R) Platinum 8480+",
                        "GenuineIntel",
                    )
                )
                processor += 1
    info = parse_cpuinfo("".join(blocks))
    assert info.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert info.vendor == "Intel"
    assert info.logical_cpus == 8
    assert info.physical_cores == 4
    assert {"amx_int8", "avx512_vnni", "avx512_bf16"} <= info.flags


def test_parse_cpuinfo_amd_without_topology_lines():
    text = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\n"
        "flags\t\t: fpu avx avx2 avx512f avx512_vnni avx512_bf16\n\n"
        "processor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\n"
        "flags\t\t: fpu avx avx2 avx512f avx512_vnni avx512_bf16\n"
    )
    info = parse_cpuinfo(text)
    assert (info.vendor, info.model, info.logical_cpus) == ("AMD", "AMD EPYC 9654", 2)
    assert info.physical_cores is None  # unknown: the caller falls back to sysfs, then logical


def test_parse_cpuinfo_arm_graviton_names_the_core_from_its_part_number():
    text = (
        "processor\t: 0\nBogoMIPS\t: 243.75\n"
        "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
        "cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm "
        "dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n"
        "CPU part\t: 0xd40\nCPU revision\t: 1\n\n"
    )
    info = parse_cpuinfo(text)
    assert info.vendor == "ARM"
    assert info.model == "Neoverse-V1"
    assert {"asimd", "asimddp", "i8mm", "bf16", "sve"} <= info.flags
    summary = isa_summary(sorted(info.flags))
    assert summary.startswith("NEON") and "I8MM" in summary and "SVE" in summary
    assert has_int8_dot_product(info.flags) and has_bf16(info.flags)


def test_parse_cpuinfo_tolerates_garbage():
    info = parse_cpuinfo("no colon here\n\n:::\nflags :\n")
    assert info.model == "" and info.physical_cores is None


def test_isa_summary_names_vnni_bf16_and_amx():
    assert isa_summary(SPR_FLAGS.split()) == (
        "AVX2 + AVX-VNNI, AVX-512 (VNNI, BF16, FP16), AMX (INT8, BF16)"
    )
    assert isa_summary(["avx", "avx2"]) == "AVX2"
    assert not has_int8_dot_product(["avx", "avx2"])
    assert "no AVX2" in isa_summary([])


def test_parse_nvidia_smi_several_gpus_and_missing_fields():
    text = (
        "NVIDIA H100 80GB HBM3, 81559, 9.0, 550.54.15\n"
        "NVIDIA H100 80GB HBM3, 81559, 9.0, 550.54.15\n"
        "Tesla T4, 15360, [N/A], [N/A]\n"
    )
    gpus = parse_nvidia_smi(text)
    assert len(gpus) == 3
    assert gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert gpus[0].memory_gb == 79.6 and gpus[0].compute_capability == "9.0"
    assert gpus[0].driver == "550.54.15"
    assert gpus[2].compute_capability is None and gpus[2].driver is None
    assert parse_nvidia_smi("") == []


def test_parse_cgroup_cpu_max():
    assert parse_cgroup_cpu_max("200000 100000\n") == 2.0
    assert parse_cgroup_cpu_max("150000 100000") == 1.5
    assert parse_cgroup_cpu_max("max 100000") is None
    assert parse_cgroup_cpu_max("garbage") is None


def test_detect_machine_on_this_host_is_complete_and_serializable():
    found = detect_machine(threads={"torch_intra_op": 2})
    assert found.cpu and found.cores >= 1 and found.logical_cores >= found.cores
    assert found.threads == {"torch_intra_op": 2}
    assert len(found.fingerprint) == 16
    assert found.gpu_count == (0 if found.gpu is None else found.gpu_count)
    data = json.loads(json.dumps(found.to_dict()))
    assert Machine.from_dict(data) == found


def test_detect_machine_uses_nvml_result_when_present(monkeypatch):
    fake = [machine_mod.GpuInfo("NVIDIA A100-SXM4-40GB", 39.4, "8.0", "535.0")]
    monkeypatch.setattr(machine_mod, "_nvml_gpus", lambda: fake)
    monkeypatch.setitem(machine_mod.sys.modules, "torch", None)
    machine_mod._static_facts.cache_clear()
    try:
        found = detect_machine()
    finally:
        machine_mod._static_facts.cache_clear()
    assert found.gpu == "NVIDIA A100-SXM4-40GB"
    assert (found.gpu_memory_gb, found.gpu_compute_capability) == (39.4, "8.0")
    assert found.gpu_count == 1 and found.gpu_driver == "535.0"
    rows = dict(describe_machine(found))
    assert rows["GPU"] == "NVIDIA A100-SXM4-40GB (39.4 GiB, compute capability 8.0, driver 535.0)"


def test_describe_machine_rows():
    record = Machine(
        cpu="AMD EPYC",
        cores=2,
        logical_cores=4,
        vendor="AMD",
        isa=("avx2", "avx512f", "avx512_vnni"),
        memory_gb=23.5,
        usable_cores=2,
        threads={"torch": 2},
    )
    rows = dict(describe_machine(record))
    assert rows["CPU"] == "AMD EPYC (AMD)"
    assert rows["Cores"] == "2 physical cores, 4 logical CPUs (2 usable by this process)"
    assert rows["ISA"] == "AVX2, AVX-512 (VNNI)"
    assert rows["GPU"] == "none detected"
    assert rows["Threads"] == "torch=2"
