"""Each peer built by its name in ``facerec.registry.PEERS``, importing only that peer's code."""

from __future__ import annotations

from facerec.models.peers import Embedder
from facerec.registry import PEERS


@PEERS.register("facenet_20180408")
def _facenet() -> Embedder:
    from facerec.models.peers.facenet import FaceNet

    return FaceNet()


@PEERS.register("dlib_resnet_v1")
def _dlib() -> Embedder:
    from facerec.models.peers.dlib_resnet import DlibResNet

    return DlibResNet()


@PEERS.register("sface_2021dec")
def _sface() -> Embedder:
    from facerec.models.peers.sface import SFace

    return SFace()


def load_peer(name: str) -> Embedder:
    """The published model ``name``; PeerUnavailable if its package is missing."""
    embedder: Embedder = PEERS.get(name)()
    return embedder
