"""AKConv: forward+backward time and peak memory of models.akconv.AKConv against the straightforward gather form.

The baseline (``gather_forward``) is the implementation the AKConv authors describe: sampling positions in
(B, h, w, 2N) layout, four integer corner indices expanded over all channels, four ``gather`` calls producing
(B, c1, h, w, N) tensors, bilinear weighting, a rearrange to (B, c1, h*N, w) and the (N, 1)-stride column conv.
It clamps the corners correctly (the authors' code weighs a sample twice when its position lies on or beyond the
last row or column), so both forms compute the same function and the outputs agree to 1e-4.

Time: median CPU time of the process (not wall time: the machine may be shared), the two forms taking turns.
Peak memory: the largest total size of live tensors during one forward+backward, from torch.profiler's memory
events (every CPU tensor allocation and free, in order). Parameters and the output gradient exist before and are
not counted; the input is a fresh copy that only the graph holds (see ``peak_bytes``); parameter gradients are
counted. This is allocator-independent, unlike process RSS.

    python benchmarks/bench_akconv.py [--cfg yolov5s_AKConv.yaml] [--img 320] [--batch 2] [--runs 5] [--threads 1]

Rows are the AKConv layers of the model yaml, each with its own input shape, at the given image size.
"""

import argparse
import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from models.akconv import AKConv
from models.yolo import Model
from utils.general import LOGGER, UserError


def gather_forward(m, x):
    """AKConv ``m``'s function on x (B, c1, H, W) by explicit corner gathers (no gradient scaling on p_conv)."""
    b, c, height, width = x.shape
    n = m.num_param
    offset = m.p_conv(x)  # (B, 2N, h, w)
    h, w = offset.shape[2:]
    rows_0 = (torch.arange(h, dtype=x.dtype) * m.stride).view(1, 1, h, 1)
    cols_0 = (torch.arange(w, dtype=x.dtype) * m.stride).view(1, 1, 1, w)
    p = torch.cat((offset[:, :n] + rows_0 + m.pattern[0].view(1, n, 1, 1),
                   offset[:, n:] + cols_0 + m.pattern[1].view(1, n, 1, 1)), 1)
    p = p.permute(0, 2, 3, 1)  # (B, h, w, 2N)
    p = torch.cat((p[..., :n].clamp(0, height - 1), p[..., n:].clamp(0, width - 1)), -1)
    q_lt = p.detach().floor()
    q_rb = torch.cat((torch.clamp(q_lt[..., :n] + 1, max=height - 1), torch.clamp(q_lt[..., n:] + 1, max=width - 1)),
                     -1)
    q_lb = torch.cat((q_lt[..., :n], q_rb[..., n:]), -1)
    q_rt = torch.cat((q_rb[..., :n], q_lt[..., n:]), -1)
    frac = p - q_lt  # in [0, 1); the far corner's weight is frac, the near corner's 1 - frac
    fr, fc = frac[..., :n], frac[..., n:]
    g_lt = (1 - fr) * (1 - fc)
    g_rb = fr * fc
    g_lb = (1 - fr) * fc
    g_rt = fr * (1 - fc)

    flat = x.reshape(b, c, -1)

    def corner(q):
        index = (q[..., :n] * width + q[..., n:]).long()  # (B, h, w, N)
        index = index.unsqueeze(1).expand(-1, c, -1, -1, -1).reshape(b, c, -1)
        return flat.gather(-1, index).view(b, c, h, w, n)

    x_offset = (g_lt.unsqueeze(1) * corner(q_lt) + g_rb.unsqueeze(1) * corner(q_rb)
                + g_lb.unsqueeze(1) * corner(q_lb) + g_rt.unsqueeze(1) * corner(q_rt))
    x_offset = x_offset.permute(0, 1, 2, 4, 3).reshape(b, c, h * n, w)  # 'b c h w n -> b c (h n) w'
    return m.conv(x_offset)


def fast_forward(m, x):
    return m(x)


def forward_backward(fn, m, x, grad):
    """One forward and a backward with the given output gradient (no loss computation in the measurement)."""
    fn(m, x).backward(grad)


def peak_bytes(fn, m, x, grad):
    """Largest sum of live tensor bytes during one forward+backward (torch.profiler memory events).

    The layer gets a fresh copy of ``x`` that only the autograd graph keeps, like a previous layer's output in a
    network, so an implementation that saves a different form of its input is not charged for both.
    """
    m.zero_grad(set_to_none=True)
    x.grad = None
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_backward(lambda m_, x_: fn(m_, x_.clone()), m, x, grad)
    # raw kineto memory events: one per allocation (+bytes) and free (-bytes), with a nanosecond time stamp
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def seconds(fns, m, x, grad, runs):
    """Median CPU time (this process, all threads) of ``runs`` forward+backward passes of each function.

    The functions take turns, so that load from other processes on a shared machine hits both alike; CPU time
    rather than wall time leaves out the time the process waits for a core.
    """
    times = [[] for _ in fns]
    for i in range(runs + 1):  # the first round warms up
        for fn, t_fn in zip(fns, times):
            m.zero_grad(set_to_none=True)
            x.grad = None
            t = time.process_time()
            forward_backward(fn, m, x, grad)
            if i:
                t_fn.append(time.process_time() - t)
    return [sorted(t)[len(t) // 2] for t in times]


def akconv_inputs(cfg, imgsz, batch):
    """(layer index, AKConv module, input shape) of every AKConv layer of model ``cfg`` at a square ``imgsz``."""
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # no layer table
    try:
        model = Model(cfg).eval()
    finally:
        LOGGER.setLevel(level)
    found = []
    hooks = [m.register_forward_pre_hook(lambda m, args: found.append((m.i, m, tuple(args[0].shape))))
             for m in model.model if isinstance(m, AKConv)]
    with torch.no_grad():
        model(torch.zeros(batch, model.yaml["ch"], imgsz, imgsz))
    for hook in hooks:
        hook.remove()
    if not found:
        raise UserError(f"{cfg} has no AKConv layer; use a yaml like yolov5s_AKConv.yaml")
    return found


def run(cfg="yolov5s_AKConv.yaml", imgsz=320, batch=2, runs=5, threads=1):
    """Benchmark every AKConv layer of ``cfg`` (its own shapes and random offsets) against the gather form."""
    torch.set_num_threads(threads)
    layers = akconv_inputs(cfg, imgsz, batch)
    print(f"AKConv layers of {cfg} at {imgsz}x{imgsz}, batch {batch}, {threads} thread(s): forward+backward, "
          f"median CPU ms of {runs} runs, peak MB of live tensors")
    print(f"{'layer':>5} {'input':>18} {'c2':>4} {'N':>2} {'s':>2} {'gather ms':>10} {'ours ms':>8} {'speed-up':>8}"
          f" {'gather MB':>10} {'ours MB':>8} {'mem ratio':>9} {'max |diff|':>10}")
    torch.manual_seed(0)
    rows = []
    for i, layer, shape in layers:
        c2 = layer.conv[0].out_channels
        m = AKConv(shape[1], c2, layer.num_param, layer.stride).train()
        with torch.no_grad():  # non-zero offsets: fractional sampling positions, some beyond the border
            m.p_conv.weight.normal_(0, 0.02)
            m.p_conv.bias.uniform_(-2, 2)
        x = torch.randn(shape, requires_grad=True)
        with torch.no_grad():
            y = fast_forward(m.eval(), x)
            diff = (y - gather_forward(m, x)).abs().max().item()
        m.train()
        grad = torch.randn_like(y)
        t_ref, t_ours = seconds((gather_forward, fast_forward), m, x, grad, runs)
        mem_ref, mem_ours = peak_bytes(gather_forward, m, x, grad), peak_bytes(fast_forward, m, x, grad)
        rows.append(dict(layer=i, shape=shape, t_ref=t_ref, t_ours=t_ours, mem_ref=mem_ref, mem_ours=mem_ours,
                         diff=diff))
        print(f"{i:>5} {'x'.join(map(str, shape)):>18} {c2:>4} {layer.num_param:>2} {layer.stride:>2}"
              f" {t_ref * 1e3:10.1f} {t_ours * 1e3:8.1f} {t_ref / t_ours:7.2f}x {mem_ref / 2**20:10.1f}"
              f" {mem_ours / 2**20:8.1f} {mem_ours / mem_ref:9.2f} {diff:10.2e}")
    t_ref, t_ours = sum(r["t_ref"] for r in rows), sum(r["t_ours"] for r in rows)
    print(f"{'all':>5} {'':>18} {'':>4} {'':>2} {'':>2} {t_ref * 1e3:10.1f} {t_ours * 1e3:8.1f} {t_ref / t_ours:7.2f}x")
    return rows


def parse_opt(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="yolov5s_AKConv.yaml", help="model yaml whose AKConv layers are measured")
    parser.add_argument("--img", "--imgsz", dest="imgsz", type=int, default=320, help="square input size (pixels)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(**vars(parse_opt()))
