"""What this machine's CPU does fast."""

import torch


def use_bf16(precision: str) -> bool:
    """Whether to run under bf16 autocast for a ``precision`` of "fp32", "bf16" or "auto".

    "auto" picks bf16 only where oneDNN has native bf16 kernels (AVX-512 BF16 / AMX):
    elsewhere bf16 convolutions are emulated and run about 10x slower than fp32 (measured
    on an AVX2-only EPYC: IResNet-18 training 0.4 vs 3.8 samples/s).
    """
    if precision == "auto":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return precision == "bf16"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("auto", "fp32", "bf16", "fp16") on ``device``; None = fp32.

    On a GPU "auto" is bf16 where the GPU has it (Ampere and later), else fp16, which needs
    a gradient scaler (``needs_grad_scaler``). On a CPU it is ``use_bf16``'s choice; fp16
    autocast on a CPU is refused.
    """
    if device.type == "cuda":
        if precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if precision == "fp16":
        raise ValueError("fp16 autocast is for GPUs: on a CPU use bf16 or fp32")
    return torch.bfloat16 if use_bf16(precision) else None


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and does not."""
    return dtype == torch.float16
