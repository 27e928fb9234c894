"""How cost grows with the amount of work: time and peak memory against size, one child process per measurement.

Cases (each size runs in its own process, so one measurement's memory never counts in another's):
  labels-cold  verify N generated image/label pairs and write the label cache (load_verified_labels, no cache yet)
  labels-warm  the same with the cache in place (hash of every path + read the .npz)
  cache-ram    LoadImagesAndLabels(cache_images="ram") at img_size 640 on N tiny images whose decoded, resized size
               (N x 1.2 MB) exceeds a fake free memory of --fake-free-mb: it must warn once and stream, then load
               a few items from the image files
  metrics      the validation statistics path on synthetic predictions: per image match_predictions and the
               COCO size-range matching, then ap_per_class and ap_ar_by_area (300 classes, --dets per image)
  nms          non_max_suppression at validation settings (conf 0.001, IoU 0.6, multi-label, 80 classes) on N
               dense candidate boxes, and nms(max_keep=300) on N random boxes
  video        detect.py (yolov5n fixture, --imgsz 128) on a generated 128x128 video of N frames, annotated video
               and per-frame labels saved; peak memory must not grow with N

Memory: "peak MB" is the peak resident memory during the measured work minus the resident memory just before it
(Linux: /proc/self/clear_refs resets the peak; elsewhere ru_maxrss, which also counts the set-up); for the video
case it is the whole detect.py process's peak (os.wait4). The labels case also extrapolates to 1M files from the
slope between the two largest sizes.

    python benchmarks/bench_scale.py [--cases labels cache-ram metrics nms video] [--label-sizes 1000 10000 100000]
        [--metric-images 500 1000 5000] [--nms-sizes 1000 10000 100000] [--frames 500 1000 2000] [--workdir DIR]
"""

import argparse
import gc
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from utils import dataloaders  # noqa: E402
from utils.boxes import nms, non_max_suppression  # noqa: E402
from utils.dataloaders import LoadImagesAndLabels, list_image_files  # noqa: E402
from utils.general import LOGGER  # noqa: E402
from utils.labels import load_verified_labels  # noqa: E402
from utils.metrics import (  # noqa: E402
    AREA_RANGES,
    IOU_THRESHOLDS,
    ap_ar_by_area,
    ap_per_class,
    match_predictions,
    match_predictions_by_area,
)

FIXTURE = ROOT / "tests" / "fixtures" / "yolov5n-v7.0.pt"
LABELS_PER_FILE = 5
VIDEO_SIZE = 128  # frame width and height, also detect.py --imgsz


# ---------------------------------------------------------------------------------------------------- measurement
def _rss_bytes():
    """Current resident memory of this process (Linux), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def _reset_peak():
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def measure(work):
    """(seconds, peak extra bytes, work's result) of calling ``work()``."""
    gc.collect()  # garbage of earlier work freed inside work() would lower the resident size under the baseline
    before = _rss_bytes() or 0
    _reset_peak()
    t0 = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - t0
    return seconds, max(_peak_bytes() - before, 0), result


# ------------------------------------------------------------------------------------------------------- data sets
def make_label_dataset(folder, n, seed=0):
    """n image/label pairs under folder/images and folder/labels: one tiny JPEG hard-linked n times (distinct paths,
    one image's bytes) and n label files of LABELS_PER_FILE random boxes over 300 classes."""
    images, labels = folder / "images", folder / "labels"
    if (folder / "done").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    images.mkdir(parents=True)
    labels.mkdir()
    source = folder / "source.jpg"
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(source), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for i in range(n):
        name = f"{i:07d}"
        try:
            os.link(source, images / f"{name}.jpg")
        except OSError:  # no hard links here: copy
            shutil.copy(source, images / f"{name}.jpg")
        xy = rng.uniform(0.2, 0.8, (LABELS_PER_FILE, 2))
        wh = rng.uniform(0.05, 0.3, (LABELS_PER_FILE, 2))
        cls = rng.integers(0, 300, LABELS_PER_FILE)
        (labels / f"{name}.txt").write_text(
            "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, (x, y), (w, h) in zip(cls, xy, wh)))
    (folder / "done").touch()
    return folder


def make_video(file, frames, size=VIDEO_SIZE):
    """A size x size mp4 of data/images/bus.jpg drifting sideways (so the model finds people and a bus in every
    frame), ``frames`` frames at 30 fps."""
    if file.exists():
        return file
    bus = cv2.resize(cv2.imread(str(ROOT / "data" / "images" / "bus.jpg")), (size, size), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(file), cv2.VideoWriter_fourcc(*"mp4v"), 30, (size, size))
    for k in range(frames):
        writer.write(np.roll(bus, k % size, axis=1))
    writer.release()
    return file


def synthetic_stats(n_images, nc=300, dets=100, labels=20, seed=0):
    """Per image (detections (dets, 6) [x1, y1, x2, y2, conf, cls], labels (labels, 5) [cls, x1, y1, x2, y2]) in
    640-pixel images: half the detections jitter around a label (same class), the rest are random."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_images):
        xy = torch.rand(labels, 2, generator=g) * 560
        wh = torch.rand(labels, 2, generator=g) * 150 + 4
        lcls = torch.randint(0, nc, (labels, 1), generator=g).float()
        lab = torch.cat((lcls, xy, xy + wh), 1)
        pick = torch.randint(0, labels, (dets // 2,), generator=g)
        near = lab[pick, 1:] + torch.randn(dets // 2, 4, generator=g) * 6
        far_xy = torch.rand(dets - dets // 2, 2, generator=g) * 560
        far = torch.cat((far_xy, far_xy + torch.rand(dets - dets // 2, 2, generator=g) * 150 + 4), 1)
        boxes = torch.cat((near, far), 0)
        cls = torch.cat((lab[pick, 0], torch.randint(0, nc, (dets - dets // 2,), generator=g).float()))
        conf = torch.rand(dets, generator=g)
        out.append((torch.cat((boxes, conf[:, None], cls[:, None]), 1), lab))
    return out


def dense_predictions(n, nc=80, seed=0, size=640.0):
    """(1, n, 5 + nc) decoded predictions like an untrained model's: boxes jittered around a coarse grid, low
    scores, so at conf 0.001 multi-label almost every (box, class) pair is a candidate."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(max(n // 40, 1), 2, generator=g) * size
    xy = centres[torch.randint(0, centres.shape[0], (n,), generator=g)] + torch.randn(n, 2, generator=g) * 4
    wh = torch.rand(n, 2, generator=g) * 60 + 10
    obj = torch.rand(n, 1, generator=g) * 0.3
    cls = torch.rand(n, nc, generator=g) * 0.3
    return torch.cat((xy, wh, obj, cls), 1)[None]


# ----------------------------------------------------------------------------------------------- child processes
def child_labels(folder, warm):
    folder = Path(folder)
    cache = folder / "labels.cache"
    if not warm:
        cache.unlink(missing_ok=True)

    def work():
        files, labels, _ = load_verified_labels(folder / "images", list_image_files(folder / "images"))
        return len(files), sum(len(lb) for lb in labels)

    level = LOGGER.level
    LOGGER.setLevel(logging.ERROR)
    try:
        seconds, peak, (n, nl) = measure(work)
    finally:
        LOGGER.setLevel(level)
    return {"seconds": seconds, "peak": peak, "note": f"{n} images, {nl} labels, cache {cache.stat().st_size >> 10} kB"}


def child_cache_ram(folder, fake_free_mb):
    folder = Path(folder)
    warnings = []

    class Catch(logging.Handler):
        def emit(self, record):
            if "caching" in record.getMessage():
                warnings.append(record.getMessage())

    def work():
        ds = LoadImagesAndLabels(folder / "images", img_size=640, cache_images="ram")
        items = [ds[i][0].shape for i in range(0, ds.n, max(ds.n // 8, 1))]  # streamed from the image files
        return ds, items

    real_free_memory, handler = dataloaders.free_memory, Catch()
    dataloaders.free_memory = lambda: fake_free_mb << 20  # pretend the machine has only this much free memory
    LOGGER.addHandler(handler)
    try:
        seconds, peak, (ds, items) = measure(work)
    finally:
        dataloaders.free_memory = real_free_memory
        LOGGER.removeHandler(handler)
    cached = sum(im is not None for im in ds.ims)
    need = ds._image_bytes(resized=True)
    return {"seconds": seconds, "peak": peak,
            "note": f"needs {need / 1e9:.1f} GB, fake free {fake_free_mb} MB: {cached} cached, "
                    f"{len(items)} items streamed; {len(warnings)} warning: {warnings[0] if warnings else '-'}"}


def child_metrics(n_images, dets):
    per_image = synthetic_stats(n_images, dets=dets)
    iouv = torch.tensor(IOU_THRESHOLDS, dtype=torch.float32)

    def work():
        stats, size_stats = [], {name: [] for name in AREA_RANGES}
        for pred, lab in per_image:
            conf, cls, label_cls = pred[:, 4].numpy(), pred[:, 5].numpy(), lab[:, 0].numpy()
            for name, (tp, counted, in_range) in match_predictions_by_area(pred, lab, iouv).items():  # as val does
                size_stats[name].append((tp, counted, conf, cls, label_cls[in_range]))
            stats.append((match_predictions(pred, lab, iouv), pred[:, 4], pred[:, 5], lab[:, 0]))
        arrays = [torch.cat(x, 0).numpy() for x in zip(*stats)]
        t_match = time.perf_counter()
        ap = ap_per_class(*arrays)[5]
        t_ap = time.perf_counter()
        by_size = [ap_ar_by_area(size_stats[name]) for name in AREA_RANGES]
        return ap, by_size, t_match, t_ap, time.perf_counter()

    t0 = time.perf_counter()
    seconds, peak, (ap, by_size, t_match, t_ap, t_end) = measure(work)
    return {"seconds": seconds, "peak": peak,
            "note": f"{n_images * dets} detections, {len(ap)} classes: match {t_match - t0:.1f} s, "
                    f"ap_per_class {t_ap - t_match:.2f} s, by size {t_end - t_ap:.2f} s; mAP50 {ap[:, 0].mean():.3f}"}


def child_nms(n):
    pred = dense_predictions(n)
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(n, 2, generator=g) * 640
    boxes, scores = torch.cat((xy, xy + torch.rand(n, 2, generator=g) * 100 + 2), 1), torch.rand(n, generator=g)
    stats = {}

    def work():
        t0 = time.perf_counter()
        out = non_max_suppression(pred, 0.001, 0.6, multi_label=True, max_det=300, stats=stats)
        t1 = time.perf_counter()
        keep = nms(boxes, scores, 0.6, max_keep=300)
        return out, keep, t1 - t0, time.perf_counter() - t1

    seconds, peak, (out, keep, t_val, t_kernel) = measure(work)
    return {"seconds": seconds, "peak": peak,
            "note": f"val NMS {t_val:.2f} s ({stats['candidates']} candidates, capped {stats['capped']}, "
                    f"{len(out[0])} kept); nms(max_keep=300) on {n} random boxes {t_kernel:.3f} s"}


def child_video(video, project):
    cmd = [sys.executable, str(ROOT / "detect.py"), "--weights", str(FIXTURE), "--source", str(video), "--imgsz",
           str(VIDEO_SIZE), "--device", "cpu", "--project", str(project), "--name", "exp", "--exist-ok", "--save-txt",
           "--conf-thres", "1e-5", "--max-det", "10"]  # the fixture is barely trained: boxes in every frame
    t0 = time.perf_counter()
    # one thread: on 2 cores shared with other jobs, two torch threads at 64 px once ran 7x slower (45 s vs 6 s for
    # 200 frames), which would hide any growth with the frame count in noise
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"detect.py failed: {stderr[-500:]}")
    n_labels = len(list((Path(project) / "exp" / "labels").glob("*.txt")))
    return {"seconds": seconds, "peak": usage.ru_maxrss * 1024,
            "note": f"whole detect.py process peak RSS, 1 thread; {n_labels} label files"}


def run_child(args):
    case, size, workdir = args.child
    size, workdir = int(size), Path(workdir)
    if case in ("labels-cold", "labels-warm"):
        result = child_labels(workdir / f"labels_{size}", warm=case == "labels-warm")
    elif case == "cache-ram":
        result = child_cache_ram(workdir / f"labels_{size}", args.fake_free_mb)
    elif case == "metrics":
        result = child_metrics(size, args.dets)
    elif case == "nms":
        result = child_nms(size)
    else:
        result = child_video(workdir / f"video_{size}.mp4", workdir / f"detect_{size}")
    print("RESULT " + json.dumps(result))


# ------------------------------------------------------------------------------------------------------------ parent
def spawn(case, size, workdir, args):
    cmd = [sys.executable, __file__, "--child", case, str(size), str(workdir), "--fake-free-mb", str(args.fake_free_mb),
           "--dets", str(args.dets)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not lines:
        return {"seconds": float("nan"), "peak": 0, "note": f"failed: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1][7:])


def run(cases=("labels", "cache-ram", "metrics", "nms", "video"), label_sizes=(1000, 10000, 100000),
        cache_sizes=(1000, 10000, 100000), metric_images=(500, 1000, 5000), nms_sizes=(1000, 10000, 100000),
        frames=(500, 1000, 2000), workdir=None, fake_free_mb=1024, dets=100, timeout=600):
    """Print one table row per (case, size) and return the rows."""
    args = argparse.Namespace(fake_free_mb=fake_free_mb, dets=dets, timeout=timeout)
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="bench_scale_"))
    tmp.mkdir(parents=True, exist_ok=True)
    plan = []
    if "labels" in cases:
        plan += [("labels-cold", n) for n in label_sizes] + [("labels-warm", n) for n in label_sizes]
    if "cache-ram" in cases:
        plan += [("cache-ram", n) for n in cache_sizes]
    if "metrics" in cases:
        plan += [("metrics", n) for n in metric_images]
    if "nms" in cases:
        plan += [("nms", n) for n in nms_sizes]
    if "video" in cases:
        plan += [("video", n) for n in frames]
    rows = []
    print(f"{'case':<12} {'size':>8} {'seconds':>9} {'us/item':>9} {'peak MB':>9}  note")
    for case, n in plan:
        if case.startswith("labels") or case == "cache-ram":
            t0 = time.perf_counter()
            made = not (tmp / f"labels_{n}" / "done").exists()
            make_label_dataset(tmp / f"labels_{n}", n)
            if made:
                print(f"{'(generate)':<12} {n:>8} {time.perf_counter() - t0:>9.2f}")
        if case == "video":
            make_video(tmp / f"video_{n}.mp4", n)
        r = spawn(case, n, tmp, args)
        rows.append((case, n, r))
        print(f"{case:<12} {n:>8} {r['seconds']:>9.2f} {1e6 * r['seconds'] / n:>9.1f} {r['peak'] / 2**20:>9.1f}  "
              f"{r['note']}", flush=True)
    for case in ("labels-cold", "labels-warm"):  # straight-line extrapolation from the two largest sizes
        pts = sorted((n, r["seconds"], r["peak"]) for c, n, r in rows if c == case)
        if len(pts) >= 2:
            (n1, t1, m1), (n2, t2, m2) = pts[-2:]
            k = (1_000_000 - n2) / (n2 - n1)
            print(f"{case:<12} {'1M est.':>8} {t2 + k * (t2 - t1):>9.1f} {'':>9} {(m2 + k * (m2 - m1)) / 2**20:>9.0f}  "
                  f"extrapolated from {n1} and {n2}")
    if not workdir:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def parse_opt(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["labels", "cache-ram", "metrics", "nms", "video"])
    p.add_argument("--label-sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    p.add_argument("--cache-sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    p.add_argument("--metric-images", nargs="+", type=int, default=[500, 1000, 5000])
    p.add_argument("--nms-sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    p.add_argument("--frames", nargs="+", type=int, default=[500, 1000, 2000])
    p.add_argument("--dets", type=int, default=100, help="detections per image in the metrics case")
    p.add_argument("--fake-free-mb", type=int, default=1024, help="free memory the cache-ram case pretends to have")
    p.add_argument("--workdir", default=None, help="keep generated data here (reused by later runs)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per measurement")
    p.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    opt = parse_opt()
    if opt.child:
        run_child(opt)
    else:
        run(**{k: v for k, v in vars(opt).items() if k != "child"})
