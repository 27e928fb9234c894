"""Detection throughput on CPU: PyTorch (fused, channels-last) against ONNX Runtime.

For each backend it reports
  - images/s of the detect.py pipeline on the bundled images (letterbox, inference, NMS, boxes scaled back), with
    detect.py's minimum-rectangle letterbox (640x480 for bus.jpg, 384x640 for zidane.jpg at 640),
  - the median latency (ms) of one 640x640 batch-1 forward pass, the figure SPEC.md section 3 anchors
    (official v7.0 on 2 threads: yolov5n about 44 ms, yolov5s about 102 ms).

    python benchmarks/bench_detect.py --cfg yolov5n.yaml yolov5s.yaml --threads 2 --runs 20

Models are built from the yamls with random weights (timing does not depend on the weight values) and fused.
"""

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from models.backends import onnx_session
from models.export import export_model
from models.yolo import Model
from utils.boxes import non_max_suppression, scale_boxes
from utils.general import LOGGER, ROOT
from utils.sources import LoadImages


def torch_runner(model, channels_last=False):
    """Callable (N, 3, H, W) float tensor -> predictions, under inference mode."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def infer(im):
        if channels_last:
            im = im.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = model(im)
        return y[0] if isinstance(y, tuple) else y  # Detect.export models return the predictions alone

    return infer


def onnx_runner(file, threads):
    """The project's ONNX Runtime session (models/backends.py): the path detect.py and val.py use."""
    session = onnx_session(file, threads=threads)

    def infer(im):
        return torch.from_numpy(session.run(None, {"images": im.numpy()})[0])

    return infer


def pipeline_images_per_second(infer, images, imgsz, passes):
    """Images per second of letterbox + inference + NMS + scale_boxes over ``passes`` passes of ``images``."""
    dataset = LoadImages(images, img_size=imgsz, stride=32, auto=True)
    for _, im, *_ in dataset:  # warm-up at each shape
        infer(torch.from_numpy(im).float()[None] / 255)
    n, t = 0, time.perf_counter()
    for _ in range(passes):
        for _, im, im0, _, _ in dataset:
            x = torch.from_numpy(im).float()[None] / 255
            det = non_max_suppression(infer(x), 0.25, 0.45, max_det=1000)[0]
            scale_boxes(x.shape[2:], det[:, :4], im0.shape)
            n += 1
    return n / (time.perf_counter() - t)


def median_latency_ms(infer, imgsz, runs, warmup=3):
    x = torch.rand(1, 3, imgsz, imgsz)
    for _ in range(warmup):
        infer(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        infer(x)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", nargs="+", default=["yolov5n.yaml", "yolov5s.yaml"], help="model yamls")
    parser.add_argument("--source", default=str(ROOT / "data" / "images"), help="images for the pipeline timing")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20, help="timed forward passes for the median latency")
    parser.add_argument("--passes", type=int, default=5, help="passes over the images for images/s")
    opt = parser.parse_args(argv)
    torch.set_num_threads(opt.threads)
    LOGGER.setLevel(logging.WARNING)
    print(f"torch {torch.__version__}, {opt.threads} threads, imgsz {opt.imgsz}, source {opt.source}")
    print(f"{'model':<14}{'backend':<28}{'images/s':>10}{'ms/img':>9}{'640 fwd ms':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in opt.cfg:
            torch.manual_seed(0)
            model = Model(cfg).eval()
            export_model(model, torch.zeros(1, 3, opt.imgsz, opt.imgsz), Path(tmp) / Path(cfg).stem,
                         include=("onnx",), dynamic=True, check=False)  # fuses model in place
            runners = {
                "pytorch fused": torch_runner(model),
                "pytorch fused channels-last": torch_runner(model, channels_last=True),
                "onnxruntime": onnx_runner(Path(tmp) / f"{Path(cfg).stem}.onnx", opt.threads),
            }
            results = {}
            for name, infer in runners.items():
                ips = pipeline_images_per_second(infer, opt.source, opt.imgsz, opt.passes)
                latency = median_latency_ms(infer, opt.imgsz, opt.runs)
                results[name] = latency
                print(f"{Path(cfg).stem:<14}{name:<28}{ips:10.2f}{1e3 / ips:9.1f}{latency:12.1f}")
            best = min(results, key=results.get)
            base = results["pytorch fused"]
            print(f"{'':<14}best 640 forward: {best} {results[best]:.1f} ms "
                  f"({results[best] / base:.2f}x of pytorch fused)")
    print("Timings on a shared machine are noisy; compare ratios within one run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
