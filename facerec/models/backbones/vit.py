"""Face ViTs: insightface arcface_torch's ``vit_*`` and TransFace's, in their checkpoint layouts.

The 112×112 input is cut into non-overlapping 9×9 patches, 12×12 = 144 tokens in row-major
order (the last 4 pixel rows and columns are never seen), plus a learned position embedding;
there is no class token. Each pre-norm block is LayerNorm (eps 1e-5) → multi-head attention
(qkv without bias, scale head_dim^-½) → residual, LayerNorm → MLP (ratio 4, ReLU6, not GELU)
→ residual. After a final LayerNorm the whole N×144×D token grid is flattened token-major
into the feature head: Linear(144·D → D) → BatchNorm1d → Linear(D → E) → BatchNorm1d
(no biases, BN eps 2e-5).

TransFace adds ``senet``: Linear(144·D → 144) → ReLU → Linear(144 → 144) → sigmoid over the
flattened grid, one weight per token that scales that token before the feature head. Its
upstream forward also returns the softmax of those weights and the per-token standard
deviation for its training losses; ours returns the embedding only.

Upstream runs qkv, the attention projection and the MLP under fp16 CUDA autocast and the
attention product itself in fp32; ours runs in the caller's precision (fp32, or autocast if
the caller enables it) with the attention product always in fp32, so fp32 outputs agree.

Training-only parts follow upstream and are inactive in eval: patch masking (a random
``mask_ratio`` of tokens skips the blocks and re-enters as ``mask_token`` before the feature
head), stochastic depth rising linearly to ``drop_path_rate``, and gradient checkpointing of
the blocks for the deep models. Upstream's dropout layers all have rate 0 and are left out.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import stochastic_depth

from facerec.registry import BACKBONES

_FEATURE_BN_EPS = 2e-5


class PatchEmbed(nn.Module):
    """N×3×S×S images → N×(S//patch)²×D tokens, row-major, by a stride-``patch`` convolution."""

    def __init__(self, image_size: int, patch: int, width: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.proj = nn.Conv2d(3, width, patch, stride=patch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"ViT expects N×3×{self.image_size}×{self.image_size} images, "
                             f"got {tuple(images.shape)}")
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (width // heads) ** -0.5
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N×T×D → N×T×D."""
        n, tokens, width = x.shape
        qkv = self.qkv(x).reshape(n, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        # Upstream keeps the attention product in fp32 under mixed precision, and so do we.
        with torch.autocast(x.device.type, enabled=False):
            q, k, v = qkv.float().unbind(0)
            weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            x = (weights @ v).transpose(1, 2).reshape(n, tokens, width)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; each residual branch is dropped per sample with ``drop_path``."""

    def __init__(self, width: int, heads: int, drop_path: float) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.mlp = Mlp(width, 4 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + stochastic_depth(self.attn(self.norm1(x)), self.drop_path, "row", self.training)
        return x + stochastic_depth(self.mlp(self.norm2(x)), self.drop_path, "row", self.training)


class VisionTransformer(nn.Module):
    """insightface's face ViT: N×3×112×112 normalised RGB in, N×``embedding_size`` out."""

    def __init__(self, width: int, depth: int, embedding_size: int = 512, heads: int = 8,
                 image_size: int = 112, patch: int = 9, drop_path_rate: float = 0.0,
                 mask_ratio: float = 0.0, checkpoint_blocks: bool = False) -> None:
        super().__init__()
        self.mask_ratio = mask_ratio
        self.checkpoint_blocks = checkpoint_blocks
        tokens = (image_size // patch) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.patch_embed = PatchEmbed(image_size, patch, width)
        # The rates are read back as numbers, so they stay on the CPU even when the model is
        # built on the meta device (``meta_backbone``).
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(Block(width, heads, rate) for rate in rates)
        self.norm = nn.LayerNorm(width)
        self.feature = nn.Sequential(
            nn.Linear(tokens * width, width, bias=False),
            nn.BatchNorm1d(width, eps=_FEATURE_BN_EPS),
            nn.Linear(width, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size, eps=_FEATURE_BN_EPS),
        )
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """N×3×112×112 → N×144×D, after the final LayerNorm."""
        x = self.patch_embed(images) + self.pos_embed
        kept = None
        if self.training and self.mask_ratio > 0:
            x, kept = self._keep_random_tokens(x)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.checkpoint_blocks and self.training else block(x)
        x = self.norm(x)
        return x if kept is None else self._fill_dropped_tokens(x, kept)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature(self.tokens(images).flatten(1))

    def _keep_random_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A random subset of each sample's N×T×D tokens, and their indices N×K."""
        n, length, width = x.shape
        # Same random draws as upstream, so a seeded training step is reproducible across both.
        order = torch.rand(n, length, device=x.device).argsort(dim=1)
        kept = order[:, :int(length * (1 - self.mask_ratio))]
        return x.gather(1, kept.unsqueeze(-1).expand(-1, -1, width)), kept

    def _fill_dropped_tokens(self, x: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """N×K×D kept tokens back at their places in N×T×D, ``mask_token`` everywhere else."""
        n, _, width = x.shape
        grid = self.mask_token.to(x.dtype).expand(n, self.pos_embed.shape[1], width)
        return grid.scatter(1, kept.unsqueeze(-1).expand(-1, -1, width), x)


class TransFaceViT(VisionTransformer):
    """TransFace's ViT: the tokens are reweighted by a learned per-token gate (``senet``)."""

    def __init__(self, width: int, depth: int, **kwargs) -> None:
        super().__init__(width, depth, **kwargs)
        tokens = self.pos_embed.shape[1]
        # Upstream adds the gate after its weight init, so it keeps PyTorch's default init.
        self.senet = nn.Sequential(
            nn.Linear(tokens * width, tokens, bias=False),
            nn.ReLU(),
            nn.Linear(tokens, tokens, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(images)
        gate = self.senet(tokens.flatten(1))
        return self.feature((tokens * gate.unsqueeze(-1)).flatten(1))


# Per-name settings of insightface's get_model; vit_l is its only large ViT, "vit_l_dp005_mask_005".
@BACKBONES.register("vit_t")
def vit_t(**kwargs) -> VisionTransformer:
    return VisionTransformer(256, 12, drop_path_rate=0.1, mask_ratio=0.1, **kwargs)


@BACKBONES.register("vit_s")
def vit_s(**kwargs) -> VisionTransformer:
    return VisionTransformer(512, 12, drop_path_rate=0.1, mask_ratio=0.1, **kwargs)


@BACKBONES.register("vit_b")
def vit_b(**kwargs) -> VisionTransformer:
    return VisionTransformer(512, 24, drop_path_rate=0.1, mask_ratio=0.1, checkpoint_blocks=True, **kwargs)


@BACKBONES.register("vit_l")
def vit_l(**kwargs) -> VisionTransformer:
    return VisionTransformer(768, 24, drop_path_rate=0.05, mask_ratio=0.05, checkpoint_blocks=True, **kwargs)


# TransFace's configs: S is "vit_s_dp005_mask_0", L "vit_l_dp005_mask_005", B (released,
# without a config) "vit_b_dp005_mask_005".
@BACKBONES.register("transface_vit_s")
def transface_vit_s(**kwargs) -> TransFaceViT:
    return TransFaceViT(512, 12, drop_path_rate=0.05, mask_ratio=0.0, **kwargs)


@BACKBONES.register("transface_vit_b")
def transface_vit_b(**kwargs) -> TransFaceViT:
    return TransFaceViT(512, 24, drop_path_rate=0.05, mask_ratio=0.05, checkpoint_blocks=True, **kwargs)


@BACKBONES.register("transface_vit_l")
def transface_vit_l(**kwargs) -> TransFaceViT:
    return TransFaceViT(768, 24, drop_path_rate=0.05, mask_ratio=0.05, checkpoint_blocks=True, **kwargs)
