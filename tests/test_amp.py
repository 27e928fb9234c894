"""--amp: the policy per device and choice, the AMP check's comparison, bf16 training accuracy; AutoBatch's fit."""

from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from models.common import C3, Conv
from models.yolo import Model
from utils.amp import AmpPolicy, DenseConcatGrads, check_amp, outputs_match, select_amp
from utils.autobatch import autobatch, fit_batch_size
from utils.general import UserError
from utils.loss import ComputeLoss, scale_loss_gains
from utils.training import build_optimizer

HYP = dict(box=0.05, obj=1.0, cls=0.5, cls_pw=1.0, obj_pw=1.0, anchor_t=4.0, fl_gamma=0.0)


@pytest.mark.parametrize("choice, device, native, expected", [
    ("auto", "cpu", True, ("bf16", True)),
    ("auto", "cpu", False, ("fp32", True)),  # fp32 channels-last: the fastest exact path without bf16
    ("on", "cpu", False, ("bf16", True)),  # emulated, said in the description
    ("off", "cpu", True, ("fp32", False)),
    ("auto", "cuda", False, ("fp16", True)),
    ("off", "cuda", False, ("fp32", True)),  # channels-last stays on CUDA, as before --amp
    ("on", "mps", False, ("fp32", False)),
])
def test_policy_per_choice_and_device(choice, device, native, expected):
    policy = select_amp(choice, device, native_bf16=native)
    assert (policy.name, policy.channels_last) == expected
    assert policy.fp16 == (expected[0] == "fp16")  # GradScaler and half-precision validation only for fp16
    assert policy.grad_scaler().is_enabled() == (policy.fp16 and torch.cuda.is_available())
    assert policy.name in policy.describe() and device.upper() in policy.describe()
    if choice == "on" and device == "cpu" and not native:
        assert "emulated" in policy.describe()


def test_unknown_choice_is_a_user_error():
    with pytest.raises(UserError, match="--amp 'fast'"):
        select_amp("fast", "cpu")


def test_amp_check_comparison():
    reference = torch.tensor([[100.0, 50.0, 0.9, 0.01]])
    assert outputs_match(reference, reference * 1.01)
    assert not outputs_match(reference, reference * 1.5)
    assert not outputs_match(reference, reference.clone().fill_(float("nan")))
    assert not outputs_match(reference, torch.zeros_like(reference))  # fp16 failures often give zeros


def test_amp_check_keeps_fp32_untouched_and_falls_back_on_failure(monkeypatch):
    model = Model("yolov5n.yaml", nc=2)
    fp32 = AmpPolicy("cpu")
    assert check_amp(model, fp32) is fp32
    monkeypatch.setattr("utils.amp.outputs_match", lambda a, b: False)
    checked = check_amp(model, AmpPolicy("cpu", torch.bfloat16, True, "test"))
    assert checked.name == "fp32" and not checked.enabled and "check failed" in checked.describe()
    assert model.training  # the check ran on a copy


def train_steps(policy, steps=8):
    """SGD steps of yolov5n (fixed seed) on one fixed synthetic batch under ``policy``; the losses (fp32)."""
    torch.manual_seed(0)
    model = Model("yolov5n.yaml", nc=2).train()
    if policy.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = ComputeLoss(model, scale_loss_gains(HYP, 3, 2, 128))
    optimizer = build_optimizer(model, "SGD", lr=0.01, momentum=0.9, decay=5e-4)
    generator = torch.Generator().manual_seed(1)
    imgs = torch.rand(4, 3, 128, 128, generator=generator)
    targets = torch.tensor([[i, i % 2, 0.3 + 0.1 * i, 0.5, 0.2, 0.3] for i in range(4)])
    if policy.channels_last:
        imgs = imgs.contiguous(memory_format=torch.channels_last)
    losses = []
    for _ in range(steps):
        with policy.autocast():
            pred = model(imgs)
        loss, _ = loss_fn([p.float() for p in pred], targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_bf16_training_follows_fp32():
    """8 steps from the same initialisation: bf16 autocast + channels-last tracks the fp32 loss curve (measured:
    at most 4.4% apart, both ending at 0.336 from 0.391; with one thread on an AVX2 CPU, emulating bf16, 0.348 vs
    0.337) and learns as much (bf16 keeps fp32's exponent range, so no loss scaling is needed)."""
    fp32 = train_steps(AmpPolicy("cpu"))
    bf16 = train_steps(AmpPolicy("cpu", torch.bfloat16, True, "test"))
    assert fp32[-1] < 0.9 * fp32[0]  # it learns
    assert bf16 == pytest.approx(fp32, rel=0.07)
    assert bf16[-1] < 0.9 * bf16[0] and bf16[-1] == pytest.approx(fp32[-1], rel=0.05)


class _SiluBackwardInputs(TorchDispatchMode):
    """Records, for every SiLU backward, whether the incoming gradient is a dense channels-last tensor."""

    def __init__(self):
        super().__init__()
        self.dense = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.silu_backward.default:
            self.dense.append(args[0].is_contiguous(memory_format=torch.channels_last))
        return func(*args, **(kwargs or {}))


def _c3_backward(dense, dtype=torch.bfloat16):
    """Parameter gradients of a channels-last C3 under ``dtype`` autocast (its concatenation hands both branches
    channel slices of the gradient) and what each SiLU backward received."""
    torch.manual_seed(0)
    block = nn.Sequential(Conv(8, 16, 3), C3(16, 16, n=1)).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        with DenseConcatGrads() if dense else nullcontext():
            y = block(x)
    recorder = _SiluBackwardInputs()
    with recorder:
        weights = torch.linspace(-1, 1, y.numel()).view_as(y).contiguous(memory_format=torch.channels_last)
        (y.float() * weights).sum().backward()
    return [p.grad.clone() for p in block.parameters()], recorder.dense


def test_dense_channels_last_grads_change_layout_not_values():
    _, plain_dense = _c3_backward(dense=False)
    _, dense = _c3_backward(dense=True)
    assert len(plain_dense) == len(dense) == 6 and not all(plain_dense)  # C3's branches get strided slices
    assert all(dense)
    # in fp32 the gradients agree to rounding (in bf16 the strided and dense kernels round differently, ~1%)
    plain_grads, _ = _c3_backward(dense=False, dtype=torch.float32)
    grads, _ = _c3_backward(dense=True, dtype=torch.float32)
    assert all((a - b).abs().max() <= 1e-5 * a.abs().max() for a, b in zip(plain_grads, grads))  # summation order


def test_autobatch_fit_on_a_fake_memory_profile():
    """Memory 0.5 GB + 0.25 GB per image; 10 GB free at 60%: (6 - 0.5) / 0.25 = 22 images."""
    sizes = (1, 2, 4, 8, 16)
    profile = [0.5 + 0.25 * b for b in sizes]
    assert fit_batch_size(sizes, profile, free_gb=10.0) == 22
    assert fit_batch_size(sizes, profile, free_gb=10.0, fraction=0.9) == 34
    assert fit_batch_size(sizes, profile[:3] + [None, None], free_gb=10.0) == 7  # OOM at 8: below it
    assert fit_batch_size(sizes, [0.75, None, None, None, None], free_gb=10.0) == 16  # too few points: fallback
    assert fit_batch_size(sizes, [1.0] * 5, free_gb=10.0) == 16  # flat profile: fallback
    assert fit_batch_size(sizes, profile, free_gb=1e6) == 1024  # capped
    assert fit_batch_size(sizes, profile, free_gb=0.5) == 1  # at least 1


def test_autobatch_on_cpu_is_a_user_error():
    with pytest.raises(UserError, match="needs a CUDA device"):
        autobatch(torch.nn.Conv2d(3, 3, 1), 64, torch.device("cpu"), AmpPolicy("cpu"))
