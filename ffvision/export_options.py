"""What `ffvision export` takes: formats, quantizations and early exit's name (torch-free, for the command line)."""

FORMATS = ("onnx", "torchscript")
QUANTIZE = ("int8",)
EARLY_EXIT = "early-exit"  # the strategy name of early exit (ASGE), exported at one --threshold
