"""TFLite conversion worker, run as a child process by models/export/tflite.py (never imported by the project):

    python litert_worker.py MODEL.pt2 OUT.tflite fp32|fp16|int8 [CALIB.npy] [EXCLUDE_REGEX]

MODEL.pt2 is a ``torch.export`` program of the prepared model (one fixed input shape); litert-torch lowers it to a
float32 .tflite. fp16 then casts the weights to float16 (ai-edge-quantizer FLOAT_CASTING, compute stays float32);
int8 calibrates static int8 weights and activations on CALIB.npy (N, 3, H, W float32 images in 0-1, read
memory-mapped) with ai-edge-quantizer, leaving the ops whose names match EXCLUDE_REGEX (the box decoding) in float.
It runs apart because litert-torch's dependencies (jax, transformers, older pydantic) may live in their own venv, and
because a converter crash then ends only this process. Imports only torch, numpy and the litert packages.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def convert(program: str, out: str, mode: str, calib: str | None = None, exclude: str | None = None) -> None:
    """Write ``out`` from the exported program ``program`` in ``mode`` (fp32, fp16 or int8)."""
    import litert_torch  # optional: the converter package of this worker's interpreter

    module = torch.export.load(program).module()
    example = torch.export.load(program).example_inputs[0]
    with tempfile.TemporaryDirectory() as tmp:
        float_file = str(Path(tmp) / "float.tflite") if mode != "fp32" else out
        litert_torch.convert(module, example).export(float_file)
        if mode == "fp32":
            return
        from ai_edge_quantizer import algorithm_manager, quantizer, recipe  # optional, with litert-torch

        q = quantizer.Quantizer(float_file)
        if mode == "fp16":
            q.add_weight_only_config(regex=".*", operation_name="*", num_bits=16,
                                     algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
            q.quantize().export_model(out, overwrite=True)
            return
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        if exclude:
            q.update_quantization_recipe(regex=exclude, operation_name="*",
                                         algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
        images = np.load(calib, mmap_mode="r")
        from ai_edge_litert.interpreter import Interpreter  # optional: names the signature and its input

        signatures = Interpreter(model_path=float_file).get_signature_list()
        key = next(iter(signatures))
        name = signatures[key]["inputs"][0]
        data = {key: [{name: np.ascontiguousarray(images[i:i + 1])} for i in range(len(images))]}
        q.quantize(q.calibrate(data)).export_model(out, overwrite=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    convert(args[0], args[1], args[2], *(a or None for a in args[3:5]))
