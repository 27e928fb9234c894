"""NMS timing for 1k, 10k and 30k candidate boxes: the blocked pure-torch NMS, torchvision's kernel where it loads,
and a one-box-at-a-time torch loop as the baseline, all in one run (compare ratios: absolute times are noisy on a
shared machine).

Cases:
  kernel-full: nms(boxes, scores) with every kept box returned (random boxes, many survive: worst case).
  kernel-300:  the same with at most 300 kept, as non_max_suppression asks (max_det=300).
  val:         non_max_suppression at validation settings (conf 0.001, IoU 0.6, multi-label, 80 classes) on
               predictions shaped like an untrained model's: dense overlapping boxes around a grid.

    python benchmarks/bench_nms.py [--sizes 1000 10000 30000] [--repeats 5] [--threads 1]
"""

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.boxes import TORCHVISION_NMS, box_iou, nms_torch, non_max_suppression  # noqa: E402


def loop_nms(boxes, scores, iou_thres, max_keep=None):
    """Baseline: take the best remaining box, drop everything overlapping it, repeat."""
    order = scores.argsort(descending=True, stable=True)
    keep = []
    while order.numel() and (max_keep is None or len(keep) < max_keep):
        i = order[0]
        keep.append(int(i))
        iou = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][iou <= iou_thres]
    return torch.tensor(keep, dtype=torch.long)


def random_boxes(n, seed=0, size=640.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * 100 + 2
    return torch.cat((xy, xy + wh), 1), torch.rand(n, generator=g)


def model_like_predictions(n, nc=80, seed=0, size=640.0):
    """(1, n, 5 + nc) decoded predictions: boxes jittered around a coarse grid (heavy overlap), low scores."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(n // 40, 1), 2, generator=g) * size
    idx = torch.randint(len(centres), (n,), generator=g)
    xy = centres[idx] + torch.randn(n, 2, generator=g) * 6
    wh = torch.rand(len(centres), 2, generator=g)[idx] * 120 + 10 + torch.randn(n, 2, generator=g) * 4
    obj = torch.rand(n, 1, generator=g) * 0.2 + 0.05
    cls = torch.rand(n, nc, generator=g) * 0.05
    return torch.cat((xy, wh.abs() + 1, obj, cls), 1)[None]


def median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 30000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    parser.add_argument("--no-loop", action="store_true", help="skip the slow one-box-at-a-time baseline")
    opt = parser.parse_args(argv)
    torch.set_num_threads(opt.threads)
    print(f"torch {torch.__version__}, {opt.threads} thread(s), median of {opt.repeats}; torchvision NMS: "
          f"{'available' if TORCHVISION_NMS is not None else 'not available'}")
    print(f"{'case':<12}{'boxes':>8}{'kept':>8}{'pure torch ms':>15}{'torchvision ms':>16}{'loop ms':>10}")
    for n in opt.sizes:
        boxes, scores = random_boxes(n)
        for case, max_keep in (("kernel-full", None), ("kernel-300", 300)):
            keep = nms_torch(boxes, scores, 0.6, max_keep=max_keep)
            t_pure = median_ms(partial(nms_torch, boxes, scores, 0.6, max_keep=max_keep), opt.repeats)
            t_tv = "-"
            if TORCHVISION_NMS is not None:
                assert torch.equal(TORCHVISION_NMS(boxes, scores, 0.6)[:max_keep], keep), "torchvision differs"
                def torchvision_call(b=boxes, s=scores, k=max_keep):
                    return TORCHVISION_NMS(b, s, 0.6)[:k]

                t_tv = f"{median_ms(torchvision_call, opt.repeats):.1f}"
            t_loop = "-"
            if not opt.no_loop and (max_keep is not None or n <= 10000):
                assert torch.equal(loop_nms(boxes, scores, 0.6, max_keep), keep), "loop baseline differs"
                t_loop = f"{median_ms(partial(loop_nms, boxes, scores, 0.6, max_keep), max(1, opt.repeats // 2)):.1f}"
            print(f"{case:<12}{n:>8}{len(keep):>8}{t_pure:>15.1f}{t_tv:>16}{t_loop:>10}")
        pred = model_like_predictions(n)
        stats = {}
        out = non_max_suppression(pred, 0.001, 0.6, multi_label=True, max_det=300, stats=stats)[0]
        t_val = median_ms(partial(non_max_suppression, pred, 0.001, 0.6, multi_label=True, max_det=300),
                          opt.repeats)
        backend = "torchvision" if TORCHVISION_NMS is not None else "pure torch"
        print(f"{'val':<12}{n:>8}{len(out):>8}{t_val:>15.1f}{'-':>16}{'-':>10}   ({backend}; {stats['candidates']} "
              f"(box, class) candidates, {'capped at 30000' if stats['capped'] else 'not capped'})")


if __name__ == "__main__":
    main()
