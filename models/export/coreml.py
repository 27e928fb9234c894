"""CoreML export (``<stem>.mlpackage``, ML program, fp32 or fp16 with ``--half``) with coremltools.

CoreML runs only on Apple systems: here the export is checked by reading the saved package's spec back (one input
'images' of the export shape, one output) instead of by running it; the post-export comparison with PyTorch is
skipped with that reason. The metadata is stored in the package's user-defined metadata.
"""

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.export.core import Exported, ExportOptions, replaced_folder
from models.export.tflite import Predictions, exported_program
from utils.general import LOGGER, UserError, colorstr
from utils.optional import require_edge


def coreml_spec_summary(package: str | Path) -> dict[str, Any]:
    """{'inputs': {name: shape}, 'outputs': {name: shape}, 'metadata': {...}} read back from a saved .mlpackage."""
    ct = require_edge("coremltools", "reading a CoreML package")
    spec = ct.utils.load_spec(str(package))
    inputs = {i.name: list(i.type.multiArrayType.shape) for i in spec.description.input}
    outputs = {o.name: list(o.type.multiArrayType.shape) for o in spec.description.output}
    return {"inputs": inputs, "outputs": outputs, "metadata": dict(spec.description.metadata.userDefined)}


def export_coreml(model: nn.Module, im: torch.Tensor, file: str | Path, metadata: dict[str, Any],
                  half: bool = False) -> Path:
    """Convert ``model`` to ``<stem>.mlpackage`` and check its spec; returns the package folder."""
    ct = require_edge("coremltools", "--include coreml")
    prefix = colorstr("CoreML:")
    file = Path(file)
    package = file.with_suffix(".mlpackage")
    LOGGER.info(f"\n{prefix} starting export with coremltools {ct.__version__}...")
    one = im.float()
    with torch.no_grad():  # torch.export: coremltools' TorchScript frontend fails on numpy 2 here
        expected = Predictions(model.float())(one)
    program = exported_program(model, one, "coreml").run_decompositions({})
    try:
        ml = ct.convert(program, inputs=[ct.TensorType(name="images", shape=tuple(one.shape))],
                        outputs=[ct.TensorType(name="output0")], convert_to="mlprogram",
                        compute_precision=ct.precision.FLOAT16 if half else ct.precision.FLOAT32)
    except (RuntimeError, ValueError, NotImplementedError, TypeError, AssertionError) as e:
        raise UserError(f"--include coreml: coremltools could not convert the model: "
                        f"{str(e).splitlines()[0][:300]}") from e
    for k, v in metadata.items():
        ml.user_defined_metadata[k] = json.dumps(v)
    with tempfile.TemporaryDirectory(prefix="coreml-") as tmp, replaced_folder(package) as work:
        ml.save(str(Path(tmp) / package.name))  # coremltools insists on the .mlpackage suffix
        shutil.copytree(Path(tmp) / package.name, work, dirs_exist_ok=True)
    spec = coreml_spec_summary(package)
    if list(spec["inputs"].values()) != [list(one.shape)] or spec["outputs"] != {"output0": list(expected.shape)}:
        raise UserError(f"--include coreml: the saved spec is not the expected one: inputs {spec['inputs']}, "
                        f"outputs {spec['outputs']}")
    LOGGER.info(f"{prefix} export success, saved as {package}; spec: input images {list(one.shape)}, outputs "
                f"{spec['outputs']} (CoreML predicts only on macOS: not run here)")
    return package


def coreml_exports(model: nn.Module, im: torch.Tensor, file: Path, metadata: dict[str, Any],
                   options: ExportOptions) -> list[Exported]:
    """``--include coreml``: ``<stem>.mlpackage`` (its check against PyTorch is skipped: CoreML needs macOS)."""
    if options.dynamic:
        raise UserError("--include coreml converts one fixed --imgsz; drop --dynamic")
    return [Exported(export_coreml(model, im, file, metadata, half=options.half), "fp16" if options.half else "fp32")]
