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
