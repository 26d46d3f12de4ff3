"""Speed and cost of a model: latency, throughput, GFLOPs, Mparams."""
