"""The host a benchmark ran on, written beside its numbers: CPU model, cores and the SIMD flags
that decide how batched evaluation compares with single steps (AVX-512 against AVX2 only)."""

from __future__ import annotations

import os
import platform

REPORTED_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile")


def resident_mebibytes(pid: int | str = "self") -> float | None:
    """A process's resident memory now, from Linux's /proc; None where there is none."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def host_description() -> dict[str, object]:
    """{"cpu", "cores", "flags", "machine"}: from /proc/cpuinfo on Linux, the platform elsewhere."""
    cpu, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and cpu in ("", platform.machine(), platform.processor()):
                    cpu = value.strip()
                elif name.strip() == "flags":
                    present = set(value.split())
                    flags = [flag for flag in REPORTED_FLAGS if flag in present]
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "flags": flags, "machine": platform.machine()}
