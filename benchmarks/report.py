"""What every ratio benchmark ends with: the machine it ran on, and its JSON (printed, optionally saved).

Seconds hold only for the machine they were taken on, and other work on it slows them, so the
machine line names the CPU count, the device, torch, the load average before the run, and the
path the CPU computed in (fp32 or bf16, the capability torch reports, the bf16 units).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from resnet_core import precision  # noqa: E402


def machine(load_before: float) -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {device}, torch {torch.__version__}, "
        f"load average before {load_before:.2f}; {precision.describe()}"
    )


def emit(summary: dict, out: Path | None) -> None:
    text = json.dumps(summary, indent=1)
    print(text)
    if out:
        out.write_text(text + "\n")
