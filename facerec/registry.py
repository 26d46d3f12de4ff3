"""Names of the pluggable parts (backbones, heads, detectors, peers) and what builds each.

Every kind has one :class:`Registry`. Its names are declared here, in a module that
imports nothing heavy, so ``facerec.config`` validates a name in params.yaml without
importing torch or any implementation, and a stage that never builds a backbone does not
depend on the backbones' code. Each implementation registers its builder under a declared
name with ``@REGISTRY.register(name)``; registering an undeclared name fails at import, and
a test checks that every declared name is registered, so the two lists cannot drift.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

BuilderT = TypeVar("BuilderT", bound=Callable)


class Registry(Generic[BuilderT]):
    """The declared names of one kind and, once their module is imported, their builders."""

    def __init__(self, kind: str, implementations: str, names: Iterable[str]) -> None:
        self.kind = kind
        self.implementations = implementations  # the module (or package) whose import registers every builder
        self.names: tuple[str, ...] = tuple(names)
        self._builders: dict[str, BuilderT] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def check(self, name: str) -> str:
        """``name`` if declared, else a ValueError listing the known names."""
        if name not in self.names:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names)}")
        return name

    def register(self, name: str) -> Callable[[BuilderT], BuilderT]:
        def decorator(builder: BuilderT) -> BuilderT:
            if name not in self.names:
                raise ValueError(f"{self.kind} {name!r} is not declared in facerec.registry; add it there")
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._builders[name] = builder
            return builder

        return decorator

    def get(self, name: str) -> BuilderT:
        """The builder of ``name`` (importing the implementations on first use)."""
        self.check(name)
        if name not in self._builders:
            importlib.import_module(self.implementations)
        return self._builders[name]


BACKBONES: Registry = Registry("backbone", "facerec.models.backbones", [
    "mobilefacenet", "iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200",
    "adaface_ir18", "adaface_ir34", "adaface_ir50", "adaface_ir101",
    "topofr_r50", "topofr_r100", "topofr_r200",
    "vit_t", "vit_s", "vit_b", "vit_l", "transface_vit_s", "transface_vit_b", "transface_vit_l", "sface",
])
HEADS: Registry = Registry("head", "facerec.models.heads", ["arcface", "cosface", "combined", "adaface"])
DETECTORS: Registry = Registry("detector", "facerec.faces.detectors", ["mtcnn", "yolo"])
PEERS: Registry = Registry("peer", "facerec.models.peers.load", ["dlib_resnet_v1", "facenet_20180408", "sface_2021dec"])
# Peers whose published weights import into one of our backbones (to fine-tune or adapt them).
PEER_BACKBONES = {"sface_2021dec": "sface"}
