"""Export a trained YOLOv5 model to TorchScript, ONNX, OpenVINO, TensorRT or the edge formats (NCNN, TFLite, MNN,
CoreML), and check the exported outputs against PyTorch's.

Usage:
    python export.py --weights runs/train/exp/weights/best.pt --include torchscript onnx --imgsz 640
    python export.py --weights yolov5s.pt --include onnx --dynamic
    python export.py --weights best.pt --include openvino [--half]             # bf16 execution where the CPU has it
    python export.py --weights best.pt --include openvino onnx --int8 --data data/shapes.yaml [--calib 300]
    python export.py --weights best.pt --include engine --device 0 [--half]    # needs CUDA and tensorrt
    python export.py --weights best.pt --include official   # best_official.pt, a checkpoint official YOLOv5 loads
    python export.py --weights best.pt --include ncnn mnn tflite [--half]   # requirements-edge.txt (+ -tflite.txt)
    python export.py --weights best.pt --include tflite --int8 --data data/shapes.yaml    # best_int8.tflite
    python export.py --weights best.pt --include onnx openvino --nms [--agnostic-nms] [--topk-all 100]  # NMS inside

The exported files sit next to the weights (best.torchscript, best.onnx, best_int8.onnx, best_openvino_model/,
best_int8_openvino_model/, best.engine) and carry the stride, class names, input size and precision, so
``python detect.py --weights best_openvino_model`` and ``python val.py --weights best.onnx`` work directly.
INT8 uses post-training quantization (NNCF for OpenVINO, ONNX Runtime's static QDQ for ONNX) calibrated on
``--calib`` images of the dataset's train split, letterboxed as at inference; no labels are needed.
"""

import argparse

from models.backends import EXPORT_METADATA_KEY
from models.export import DEFAULT_CALIB, DEFAULT_OPSET, FORMATS, export_weights
from utils.general import LOGGER, UserError, end_process, exit_code, print_args
from utils.torch_utils import save_for_mobile

TRT_WORKSPACE_GB = 4  # what export_engine builds with
MAX_TOPK = 10000  # --topk-per-class / --topk-all: the padded output holds topk-all rows per image


def run(optimize: bool = False, keras: bool = False, workspace: int = TRT_WORKSPACE_GB, verbose: bool = False,
        nms: bool = False, agnostic_nms: bool = False, topk_per_class: int = 100, topk_all: int = 100,
        iou_thres: float = 0.45, conf_thres: float = 0.25, **kwargs: object) -> list[str]:
    """export.run(weights=..., include=...): the Python entry point, same flags as the command line; returns the
    exported files. ``optimize`` adds a PyTorch Mobile <stem>.ptl beside each .torchscript. ``nms`` (or
    ``agnostic_nms``) puts NMS inside the ONNX and OpenVINO graphs with the other NMS flags (models/export/nms.py
    gives the output layout). ``keras``, ``workspace`` and ``verbose`` are official YOLOv5 v7.0's flags for formats
    or TensorRT settings this project does not have: accepted, with a warning when set."""
    if keras:
        LOGGER.warning("WARNING: --keras applies to TensorFlow formats (saved_model, pb, tflite, tfjs), which this "
                       "project does not export; ignored")
    if nms or agnostic_nms:
        if not (0 < conf_thres <= 1 and 0 <= iou_thres <= 1):
            raise UserError(f"--conf-thres {conf_thres} must be in (0, 1] and --iou-thres {iou_thres} in [0, 1]")
        if not (0 < topk_per_class <= MAX_TOPK and 0 < topk_all <= MAX_TOPK):
            raise UserError(f"--topk-per-class {topk_per_class} and --topk-all {topk_all} must be 1 to {MAX_TOPK}")
        kwargs["nms"] = dict(conf_thres=conf_thres, iou_thres=iou_thres, topk_per_class=topk_per_class,
                             topk_all=topk_all, agnostic=agnostic_nms)
    if workspace != TRT_WORKSPACE_GB or verbose:
        LOGGER.warning(f"WARNING: --workspace/--verbose ignored: TensorRT engines are built with a "
                       f"{TRT_WORKSPACE_GB} GB workspace and warning-level logs")
    files = export_weights(**kwargs)
    if optimize:
        if not any(f.endswith(".torchscript") for f in files):
            LOGGER.warning("WARNING: --optimize applies to --include torchscript; nothing to optimize")
        mobile = [save_for_mobile(f, (EXPORT_METADATA_KEY,)) for f in files if f.endswith(".torchscript")]
        files += [str(f) for f in mobile if f is not None]
    return files


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export a YOLOv5 model to TorchScript / ONNX")
    parser.add_argument("--weights", type=str, default=None,
                        help="model.pt path (default: newest runs/train/*/weights/best.pt)")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640, 640], help="image (h, w)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size")
    parser.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--half", action="store_true",
                        help="FP16 export (CUDA); on CPU: bf16 OpenVINO, fp16 weights for NCNN/TFLite/MNN/CoreML")
    parser.add_argument("--inplace", action="store_true", help="set YOLOv5 Detect() inplace=True")
    parser.add_argument("--dynamic", action="store_true", help="ONNX: dynamic batch and image size")
    parser.add_argument("--simplify", action="store_true", help="ONNX: simplify the graph (needs onnxslim)")
    parser.add_argument("--opset", type=int, default=None, help=f"ONNX: opset version (default {DEFAULT_OPSET})")
    parser.add_argument("--include", nargs="+", default=["torchscript", "onnx"], help=f"formats: {FORMATS}")
    parser.add_argument("--int8", action="store_true", help="OpenVINO / ONNX / TFLite: INT8 post-training quantization")
    parser.add_argument("--data", type=str, default=None, help="dataset.yaml whose train images calibrate --int8")
    parser.add_argument("--calib", type=int, default=DEFAULT_CALIB, help="--int8: number of calibration images")
    parser.add_argument("--optimize", action="store_true", help="TorchScript: also save a PyTorch Mobile .ptl")
    # official YOLOv5 v7.0 flags for formats or settings this project does not have: accepted, warned about
    parser.add_argument("--keras", action="store_true", help="TF: use Keras (TensorFlow formats: not exported)")
    parser.add_argument("--workspace", type=int, default=TRT_WORKSPACE_GB, help="TensorRT: workspace size (GB)")
    parser.add_argument("--verbose", action="store_true", help="TensorRT: verbose log")
    parser.add_argument("--nms", action="store_true", help="ONNX/OpenVINO: NMS inside the model")
    parser.add_argument("--agnostic-nms", action="store_true", help="ONNX/OpenVINO: class-agnostic NMS inside")
    parser.add_argument("--topk-per-class", type=int, default=100, help="--nms: detections kept per class")
    parser.add_argument("--topk-all", type=int, default=100, help="--nms: detections kept per image")
    parser.add_argument("--iou-thres", type=float, default=0.45, help="--nms: IoU threshold")
    parser.add_argument("--conf-thres", type=float, default=0.25, help="--nms: confidence threshold")
    opt = parser.parse_args(argv)
    print_args(vars(opt), "export")
    return opt


def main(argv: list[str] | None = None) -> int:
    return exit_code(lambda: run(**vars(parse_opt(argv))))


if __name__ == "__main__":
    end_process(main())
