"""Each peer built by its name in ``facerec.registry.PEERS``, importing only that peer's code.

A builder takes the threads the peer may run on. OpenCV's (FaceNet) and torch's pools are
per process (``facerec.runtime.engine.limit_threads`` sets them); onnxruntime's (SFace)
belongs to each session; dlib's network runs on one thread (this build has no BLAS).
"""

from __future__ import annotations

from facerec.models.peers import Embedder
from facerec.registry import PEERS


@PEERS.register("facenet_20180408")
def _facenet(num_threads: int) -> Embedder:
    from facerec.models.peers.facenet import FaceNet

    return FaceNet()


@PEERS.register("dlib_resnet_v1")
def _dlib(num_threads: int) -> Embedder:
    from facerec.models.peers.dlib_resnet import DlibResNet

    return DlibResNet()


@PEERS.register("sface_2021dec")
def _sface(num_threads: int) -> Embedder:
    from facerec.models.peers.sface import SFace

    return SFace(num_threads)


def load_peer(name: str, num_threads: int = 0) -> Embedder:
    """The published model ``name`` running on ``num_threads`` threads where its runtime takes
    a count per model (0: the runtime's default); PeerUnavailable if its package is missing."""
    embedder: Embedder = PEERS.get(name)(num_threads)
    return embedder
