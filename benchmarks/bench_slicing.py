"""Sliced inference on large images with small objects: COCO AP_small with and without slicing, the time per image,
and the two merges (utils/slicing.py) compared on the same tile detections.

Usage:
    python benchmarks/bench_slicing.py --weights best.pt --data data/shapes_large.yaml --images 10 \\
        --slices 320 640 --slice-imgsz 640 --full-sizes 640 1920 --out benchmarks/results

Rows: the whole image letterboxed to each --full-sizes (ordinary val.py), and each --slices tile size run at
--slice-imgsz with each merge. The tiles of an image are run once and both merges applied to the same pooled
detections, so the merges differ only by merging. Time per image: for the whole image, val's pre-process,
inference and NMS times (the dataloader's decoding and letterboxing excluded); for slicing, cutting and
letterboxing the tiles, every forward, NMS and the merge (decoding excluded).
Writes slicing.csv and slicing.md to --out.
"""

import argparse
import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from models.backends import DetectMultiBackend  # noqa: E402
from utils.boxes import non_max_suppression  # noqa: E402
from utils.dataloaders import create_dataloader, list_image_files  # noqa: E402
from utils.dataset_yaml import check_dataset  # noqa: E402
from utils.evaluation import evaluate  # noqa: E402
from utils.general import LOGGER, exit_code, names_dict  # noqa: E402
from utils.slicing import MERGES, Slicer, tile_grid  # noqa: E402

COLUMNS = ("inference", "imgsz", "merge", "images", "ap_small", "ar_small", "map50", "map50_95", "ms_per_image",
           "forwards_per_image")


class _Replay:
    """A slicer for ``evaluate`` that runs an image's passes once (cached by call order, which a non-shuffled
    loader repeats) and merges them with ``merge``; it times both."""

    def __init__(self, slicer: Slicer, cache: list, merge: str) -> None:
        self.slicer, self.cache, self.merge = slicer, cache, merge
        self.calls, self.seconds = 0, 0.0

    def __call__(self, im) -> torch.Tensor:
        if self.calls == len(self.cache):
            t0 = time.perf_counter()
            self.cache.append((self.slicer.passes(im), time.perf_counter() - t0))
        pooled, seconds = self.cache[self.calls]
        self.calls += 1
        t0 = time.perf_counter()
        det = self.slicer.merged(pooled, self.merge)
        self.seconds += seconds + time.perf_counter() - t0
        return det


def _row(output, inference: str, imgsz: int, merge: str, images: int, ms: float, forwards: int) -> dict:
    sizes = output.by_size
    return {"inference": inference, "imgsz": imgsz, "merge": merge, "images": images,
            "ap_small": sizes.ap_small, "ar_small": sizes.ar_small, "map50": output.results.map50,
            "map50_95": output.results.map50_95, "ms_per_image": ms, "forwards_per_image": forwards}


def run(weights: str, data: str = "data/shapes_large.yaml", images: int = 10, slices: tuple[int, ...] = (320, 640),
        slice_imgsz: int = 640, overlap: float = 0.2, full_sizes: tuple[int, ...] = (640, 1920), threads: int = 0,
        out: str | Path = "benchmarks/results", conf_thres: float = 0.001, iou_thres: float = 0.6,
        max_det: int = 300) -> list[dict]:
    """Measure every row (see the module docstring) on the first ``images`` val images of ``data``; returns the
    rows and writes them to ``out``/slicing.csv and .md."""
    if threads:
        torch.set_num_threads(threads)
    data = check_dataset(data)
    files = sorted(list_image_files(data["val"]))[:images]
    device = torch.device("cpu")
    model = DetectMultiBackend(weights, device=device)
    names, nc = names_dict(model.names), int(data["nc"])
    common = dict(conf_thres=conf_thres, iou_thres=iou_thres, max_det=max_det, plots=False, by_size=True)
    rows = []

    def loader(imgsz: int) -> DataLoader:
        return create_dataloader(files, imgsz, 1, model.stride, rect=True, pad=0.5, workers=0)[0]

    loader_shape = loader(slice_imgsz).dataset.shapes[0]  # (w, h) of the first image: the tile count

    for size in full_sizes:  # ordinary inference: the whole image letterboxed to ``size``
        model.warmup(imgsz=(1, 3, size, size))
        output = evaluate(model, loader(size), nc, names, device, **common)
        ms = sum(output.times)  # tensor conversion, forward and NMS per image (the dataloader letterboxes)
        rows.append(_row(output, "whole image", size, "-", len(files), ms, 1))
        LOGGER.info(f"whole image at {size}: {output.by_size.describe()}, {ms:.0f} ms per image")
    nms = lambda x: non_max_suppression(x, conf_thres, iou_thres, multi_label=True, max_det=max_det)  # noqa: E731
    for size in slices:
        slicer = Slicer(model, nms, slice_imgsz, size, overlap, iou_thres=iou_thres, max_det=max_det,
                        batch_size=8, device=device)
        cache = []
        for merge in MERGES:
            replay = _Replay(slicer, cache, merge)
            output = evaluate(model, loader(slice_imgsz), nc, names, device, slicer=replay, **common)
            ms = replay.seconds / len(files) * 1e3 + output.times[0]  # letterboxing, forwards, NMS, merge
            w, h = (int(x) for x in loader_shape)
            n_tiles = len(tile_grid(h, w, size, overlap))
            rows.append(_row(output, f"sliced {size} px, overlap {overlap:g}", slice_imgsz, merge, len(files), ms,
                             n_tiles + 1))
            LOGGER.info(f"sliced {size} ({merge}): {output.by_size.describe()}, {ms:.0f} ms per image")
    write(rows, Path(out), weights, data)
    return rows


def write(rows: list[dict], out: Path, weights: str, data: dict) -> None:
    """slicing.csv (every column) and slicing.md (a table) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "slicing.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Weights {Path(weights).name}, data {Path(data.get('yaml_file', '')).name}, first {rows[0]['images']} "
             f"val images; conf 0.001, IoU 0.6 (val.py's settings); CPU ms per image: forwards, NMS and (sliced) "
             f"tiling and merging, image decoding excluded.", "",
             "| inference | imgsz | merge | AP_small | AR_small | mAP50 | mAP50-95 | forwards/image | ms/image |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['inference']} | {r['imgsz']} | {r['merge']} | {r['ap_small']:.3f} | {r['ar_small']:.3f} "
                     f"| {r['map50']:.3f} | {r['map50_95']:.3f} | {r['forwards_per_image']} | "
                     f"{r['ms_per_image']:.0f} |")
    (out / "slicing.md").write_text("\n".join(lines) + "\n")
    LOGGER.info("\n".join(lines))


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a detection model (.pt or exported)")
    parser.add_argument("--data", default="data/shapes_large.yaml", help="dataset yaml (its val split)")
    parser.add_argument("--images", type=int, default=10, help="the first N val images")
    parser.add_argument("--slices", nargs="+", type=int, default=[320, 640], help="tile sizes")
    parser.add_argument("--slice-imgsz", type=int, default=640, help="input size of each tile and the whole image")
    parser.add_argument("--overlap", type=float, default=0.2, help="tile overlap (fraction)")
    parser.add_argument("--full-sizes", nargs="+", type=int, default=[640, 1920], help="unsliced image sizes")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--out", default="benchmarks/results", help="folder of slicing.csv and slicing.md")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(exit_code(lambda: run(**vars(parse_opt()))))
