"""What every ratio benchmark ends with: the machine it ran on, and its JSON (printed, optionally saved).

Seconds hold only for the machine they were taken on, and other work on it slows them, so the
machine line names the CPU count, the device, torch, and the load average before the run.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch


def machine(load_before: float) -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {device}, torch {torch.__version__}, "
        f"load average before {load_before:.2f}"
    )


def emit(summary: dict, out: Path | None) -> None:
    text = json.dumps(summary, indent=1)
    print(text)
    if out:
        out.write_text(text + "\n")
