"""System description: detected on the target, merged with what the user sets, schema-checked."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

from benchpipe import provenance
from benchpipe.contracts.atomic import atomic_file
from benchpipe.contracts.config import Target
from benchpipe.contracts.schemas import validate

SCHEMA = "system_desc.schema.json"
UNKNOWN = "N/A"  # the official trees' word for a field that does not apply


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def _memory_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 ** 2:.0f} GB"
    except OSError:
        pass
    return UNKNOWN


def _os_name() -> str:
    try:
        info = platform.freedesktop_os_release()
        return f"{info.get('PRETTY_NAME', info.get('NAME', 'Linux'))}, kernel {platform.release()}"
    except OSError:
        return f"{platform.system()} {platform.release()}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _tensorflow_version() -> str:
    # CPU images carry tensorflow-cpu, CUDA images tensorflow: the same module either way.
    cpu = _version("tensorflow-cpu")
    return _version("tensorflow") if cpu == "not installed" else cpu


def detect() -> dict[str, str]:
    """What this machine says about itself; every value a string, as the checkers need."""
    cpu = _cpuinfo()
    vcpus = os.cpu_count() or 1
    cores = cpu.get("cpu cores", str(vcpus))
    mhz = cpu.get("cpu MHz")
    return {
        "number_of_nodes": "1",
        "host_processors_per_node": "1",
        "host_processor_model_name": cpu_model(),
        "host_processor_core_count": cores,
        "host_processor_vcpu_count": str(vcpus),
        "host_processor_frequency": f"{float(mhz):.0f} MHz" if mhz else UNKNOWN,
        "host_processor_caches": cpu.get("cache size", UNKNOWN),
        "host_memory_capacity": _memory_gb(),
        "operating_system": _os_name(),
        "framework": f"TensorFlow {_tensorflow_version()}, Keras {_version('keras')}",
        "other_software_stack": (
            f"Python {platform.python_version()}, mlcommons-loadgen {_version('mlcommons-loadgen')}, "
            f"mlperf-logging {_version('mlperf-logging')}, benchpipe {_version('benchpipe')}"
        ),
    }


def defaults(target: Target) -> dict[str, str]:
    """Fields no probe can read: placeholders a user overrides in the target file."""
    cpu_only = target.device_kind == "cpu"
    return {
        "system_name": target.name,
        "host_processor_interconnect": UNKNOWN,
        "host_storage_type": UNKNOWN,
        "host_storage_capacity": UNKNOWN,
        "host_networking": UNKNOWN,
        "host_networking_topology": UNKNOWN,
        "host_memory_configuration": UNKNOWN,
        "accelerators_per_node": "0" if cpu_only else str(target.device_count),
        "accelerator_model_name": UNKNOWN,
        "accelerator_host_interconnect": UNKNOWN,
        "accelerator_frequency": UNKNOWN,
        "accelerator_on-chip_memories": UNKNOWN,
        "accelerator_memory_configuration": UNKNOWN,
        "accelerator_memory_capacity": UNKNOWN,
        "accelerator_interconnect": UNKNOWN,
        "accelerator_interconnect_topology": UNKNOWN,
        "cooling": UNKNOWN,
        "hw_notes": f"benchpipe target {target.name} (runtime {target.runtime})",
        "sw_notes": "Produced by benchpipe",
        "system_type": target.system_type,
        "host_network_card_count": "0",
        "system_type_detail": UNKNOWN,
    }


def describe_system(target: Target, *, submitter: str, division: str, status: str) -> dict[str, str]:
    description = {**defaults(target), **detect(), **target.system}
    # Who submits and in which division come from the config, never from the target file.
    description.update({"submitter": submitter, "division": division, "status": status})
    # Which runtime and image produced the results stays in the notes, whatever the user wrote.
    description["sw_notes"] += f"; {provenance.summary(provenance.collect())}"
    validate(description, SCHEMA, what=f"system description of target {target.name}")
    return dict(sorted(description.items()))


def write_description(description: dict[str, str], out: Path) -> None:
    with atomic_file(out) as f:
        json.dump(description, f, indent=2)
        f.write("\n")
