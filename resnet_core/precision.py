"""Which number format a network computes in: bf16 where the device has bf16 units, else fp32.

bf16 autocast runs convolutions and matrix products in bfloat16 (8-bit mantissa, fp32's range),
with the weights, the optimizer and the loss kept in fp32, as on a GPU. On a CPU with AMX tiles or
AVX512-BF16 instructions (Intel Sapphire Rapids and newer, AMD Zen 4 and newer) oneDNN computes
it in hardware: a training step of ResNet-20 at 28 px went 1.84x faster, ResNet-18 at 32 px 2.5x
(issue 16, 2-core Xeon). On a CPU without them (AVX2 only) torch emulates bf16 through fp32 and
the step gets slower, so there the default stays fp32.

The question goes to torch, never to a list of processor names: the ISA its kernels dispatch to
(``torch.backends.cpu.get_cpu_capability``) and the instructions cpuinfo sees (``torch.cpu``).
Capping the kernels (``ATEN_CPU_CAPABILITY`` below AVX512, or ``ONEDNN_MAX_CPU_ISA`` below
AVX512_CORE_BF16) turns the bf16 units off for torch, and so here too.

``RESNET_LAB_CPU_BF16`` overrides the CPU's default: ``on`` computes in bf16 even where it is
emulated (slow; for tests and for measuring accuracy where no CPU has the units), ``off`` keeps
fp32 everywhere; any other value is ignored (auto) with a warning, and the home page names it.
``TrainConfig.amp = False`` (``--no-amp``) always means fp32.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import torch

ENV = "RESNET_LAB_CPU_BF16"
CHOICES = ("auto", "on", "off")
# oneDNN's ISA names (its docs: "CPU Dispatcher Control") below bf16 compute, and those with bf16
# but below AMX; any other cap (ALL, the AMX ones, AVX10) leaves both.
_ONEDNN_NO_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
_ONEDNN_NO_AMX = _ONEDNN_NO_BF16 | {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"}


@dataclass(frozen=True)
class Precision:
    """What a forward pass computes in: ``bf16`` or not, and a label for people (``"bf16 (AMX)"``)."""

    bf16: bool
    label: str

    def autocast(self, device: torch.device | str):
        """The context that applies it: bf16 autocast, or nothing."""
        kind = torch.device(device).type
        if not self.bf16 or kind not in ("cpu", "cuda"):
            return contextlib.nullcontext()
        return torch.autocast(kind, dtype=torch.bfloat16)


FP32 = Precision(False, "fp32")


def cpu_bf16_units() -> str | None:
    """``"AMX"`` or ``"AVX512-BF16"`` when torch's CPU kernels compute bf16 in hardware here, else None."""
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return None  # not x86 with AVX-512, or ATEN_CPU_CAPABILITY caps it lower
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").strip().upper()
    if cap in _ONEDNN_NO_BF16:
        return None
    if torch.cpu._is_amx_tile_supported() and cap not in _ONEDNN_NO_AMX:
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return "AVX512-BF16"  # every CPU with AMX has AVX512-BF16 too
    return None


def setting_problem() -> str | None:
    """One sentence when ``RESNET_LAB_CPU_BF16`` holds none of :data:`CHOICES`, naming them."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        return f"{ENV}={value!r} is not one of: {', '.join(CHOICES)}; it is ignored (auto)."
    return None


def cpu_choice() -> str:
    """``RESNET_LAB_CPU_BF16`` as one of :data:`CHOICES`. A server with a typo there keeps serving
    (auto), warns in its log, and says so on the home page (:func:`setting_problem`)."""
    problem = setting_problem()
    if problem:
        warnings.warn(problem, stacklevel=2)
        return "auto"
    return os.environ.get(ENV, "auto").strip().lower() or "auto"


def resolve(device: torch.device | str, amp: bool = True) -> Precision:
    """The precision a run on ``device`` computes in: bf16 where the device computes it natively
    and ``amp`` allows it, else fp32."""
    kind = torch.device(device).type
    if not amp:
        return FP32
    if kind == "cuda":
        # Native bf16 only (compute capability 8+): on a T4 or V100 it is emulated, slower than fp32.
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        return Precision(True, "bf16 (CUDA)") if native else FP32
    if kind != "cpu":
        return FP32  # MPS: fp32 (its bf16 autocast is partial and not faster for these nets)
    choice, units = cpu_choice(), cpu_bf16_units()
    if choice == "off" or (choice == "auto" and units is None):
        return FP32
    return Precision(True, f"bf16 ({units or 'emulated'})")


def describe() -> str:
    """One line for benchmarks and the CLI: the CPU path, torch's capability and the bf16 units."""
    units = cpu_bf16_units()
    return (
        f"CPU path {resolve('cpu').label}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}; "
        f"bf16 units: {units or 'none'}"
    )
