"""Models and checkpoints: backbones, margin heads, Partial FC, checkpoint layouts, ONNX, peers, the zoo."""
