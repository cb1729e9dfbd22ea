"""Facts about this machine for the home page and the CLI: devices, versions, network, data."""

from __future__ import annotations

import os
import platform
import socket
from concurrent.futures import ThreadPoolExecutor, TimeoutError

import torch
import torchvision

from resnet_core import data, precision
from resnet_core.messages import Message

# Where torchvision's downloads come from; reaching one answers "can we download?".
PROBE_HOSTS = (("download.pytorch.org", 443), ("ossci-datasets.s3.amazonaws.com", 443))


def network_reachable(timeout: float = 2.0) -> bool:
    """True when a download host accepts a TCP connection within ``timeout`` seconds in all.

    The probe runs in a thread with a hard deadline because a DNS lookup in an offline
    classroom can block far longer than the socket timeout, which does not cover it.
    """

    def probe() -> bool:
        for host, port in PROBE_HOSTS:
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    return True
            except OSError:
                continue
        return False

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(probe).result(timeout=timeout)
    except TimeoutError:
        return False
    finally:
        pool.shutdown(wait=False)


def devices() -> list[dict]:
    """Each usable device: kind, name, and memory for GPUs."""
    found = [{"kind": "cpu", "name": platform.processor() or platform.machine(), "cores": os.cpu_count()}]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        found.append({"kind": "cuda", "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)})
    if torch.backends.mps.is_available():
        found.append({"kind": "mps", "name": "Apple GPU"})
    return found


def precision_problem() -> Message | None:
    """:func:`precision.setting_problem`'s sentence with its key, for the home page (None: none)."""
    if precision.setting_problem() is None:
        return None
    value = os.environ.get(precision.ENV, "auto").strip().lower() or "auto"
    return Message("precision.bad_setting", env=precision.ENV, value=value, choices=", ".join(precision.CHOICES))


def environment(check_network: bool = True) -> dict:
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": torchvision.__version__,
        "devices": devices(),
        "default_device": "cuda" if torch.cuda.is_available() else "cpu",
        # What a run on the default device computes in unless --no-amp (the CPU's: also prediction's).
        "precision": {"cpu": precision.resolve("cpu").label, "cuda": precision.resolve("cuda").label},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "precision_problem": precision_problem(),
        "network": network_reachable() if check_network else None,
        "datasets_on_disk": datasets_on_disk(),
        "lab_home": str(data.lab_home()),
    }


def datasets_on_disk() -> list[str]:
    """The datasets this lab can train on without a download: built-in ones fetched, every folder."""
    return [n for n in data.list_datasets() if data.is_present(n)]
