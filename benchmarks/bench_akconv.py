"""AKConv: forward+backward time and peak memory of models.akconv.AKConv against the straightforward gather form.

The baseline (``gather_forward``) is the implementation the AKConv authors describe: sampling positions in
(B, h, w, 2N) layout, four integer corner indices expanded over all channels, four ``gather`` calls producing
(B, c1, h, w, N) tensors, bilinear weighting, a rearrange to (B, c1, h*N, w) and the (N, 1)-stride column conv.
It clamps the corners correctly (the authors' code weighs a sample twice when its position lies on or beyond the
last row or column), so both forms compute the same function and the outputs agree to 1e-4.

Peak memory: the largest total size of live tensors during one forward+backward, from torch.profiler's memory
events (every CPU tensor allocation and free, in order; the module's parameters and the input are allocated
before profiling starts and are not counted). This is allocator-independent, unlike process RSS.

    python benchmarks/bench_akconv.py [--sizes 80x80 40x40 20x20] [--runs 5] [--threads 2]
"""

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from models.akconv import AKConv


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
    q_rb = torch.cat((torch.clamp(q_lt[..., :n] + 1, max=height - 1), torch.clamp(q_lt[..., n:] + 1, max=width - 1)), -1)
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


def forward_backward(fn, m, x):
    """One forward and a backward with a fixed output gradient (no loss computation in the measurement)."""
    y = fn(m, x)
    y.backward(output_gradient(y))


def output_gradient(y, cache={}):
    """The same random output gradient for both implementations, allocated once outside the measurements."""
    key = tuple(y.shape)
    if key not in cache:
        cache[key] = torch.randn(key, generator=torch.Generator().manual_seed(1))
    return cache[key]


def peak_bytes(fn, m, x):
    """Largest sum of live tensor bytes during one forward+backward (torch.profiler memory events)."""
    m.zero_grad(set_to_none=True)
    x.grad = None
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_backward(fn, m, x)
    # raw kineto memory events: one per allocation (+bytes) and free (-bytes), with a nanosecond time stamp
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def seconds(fns, m, x, runs):
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
            forward_backward(fn, m, x)
            if i:
                t_fn.append(time.process_time() - t)
    return [sorted(t)[len(t) // 2] for t in times]


def run(sizes=("80x80", "40x40", "20x20"), channels=(64, 128, 256), num_param=5, stride=2, batch=2, runs=5, threads=1):
    """Print one table row per input size; channels[i] goes with sizes[i] (c2 = 2 * c1, like a YOLOv5 downsample)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"AKConv num_param={num_param} stride={stride} batch={batch} threads={threads}, forward+backward, CPU")
    print(f"{'input':>18} {'gather ms':>10} {'ours ms':>8} {'speed-up':>8} {'gather MB':>10} {'ours MB':>8} {'mem ratio':>9}"
          f" {'max |diff|':>10}")
    rows = []
    for size, c1 in zip(sizes, channels):
        height, width = (int(v) for v in size.split("x"))
        m = AKConv(c1, 2 * c1, num_param, stride).train()
        with torch.no_grad():  # non-zero offsets: fractional sampling positions, some beyond the border
            m.p_conv.weight.normal_(0, 0.02)
            m.p_conv.bias.uniform_(-2, 2)
        x = torch.randn(batch, c1, height, width, requires_grad=True)
        with torch.no_grad():
            diff = (fast_forward(m.eval(), x) - gather_forward(m, x)).abs().max().item()
        m.train()
        t_ref, t_ours = seconds((gather_forward, fast_forward), m, x, runs)
        mem_ref, mem_ours = peak_bytes(gather_forward, m, x), peak_bytes(fast_forward, m, x)
        row = dict(size=size, t_ref=t_ref, t_ours=t_ours, mem_ref=mem_ref, mem_ours=mem_ours, diff=diff)
        rows.append(row)
        name = f"{batch}x{c1}x{height}x{width}"
        print(f"{name:>18} {t_ref * 1e3:10.1f} {t_ours * 1e3:8.1f} {t_ref / t_ours:7.2f}x {mem_ref / 2**20:10.1f}"
              f" {mem_ours / 2**20:8.1f} {mem_ours / mem_ref:9.2f} {diff:10.2e}")
    return rows


def parse_opt(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["80x80", "40x40", "20x20"], help="input HxW per row")
    parser.add_argument("--channels", nargs="+", type=int, default=[64, 128, 256], help="input channels per row")
    parser.add_argument("--num-param", type=int, default=5, help="AKConv sampling points")
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(**vars(parse_opt()))
