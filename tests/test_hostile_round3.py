"""Untrusted input, round 3: values that pass type checks but would hang, allocate gigabytes or end in a
traceback (a huge --freeze, hostile resume state, an oversized model yaml, directory link loops, inflating
checkpoint members, allocating TorchScript, damaged evolve/ablation state) each become a one-line UserError or a
warning and a skip."""

import argparse
import time

import pytest
import torch

import train
from utils.general import UserError

CPU = torch.device("cpu")


def test_huge_freeze_count_is_bounded_by_the_layer_count():
    opt = argparse.Namespace(resume=False, cfg="yolov5n.yaml", amp="auto", freeze=[10**9], sync_bn=False)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"--freeze 1000000000 freezes all 25 layers"):
        train.build_model(opt, None, 80, {i: str(i) for i in range(80)}, CPU)
    assert time.monotonic() - start < 60  # unbounded, it builds 10^9 names (minutes, ~60 GB)


def test_freeze_indices_past_the_last_layer_are_ignored():
    opt = argparse.Namespace(resume=False, cfg="yolov5n.yaml", amp="auto", freeze=[0, 1, 10**9], sync_bn=False)
    model, _ = train.build_model(opt, None, 80, {i: str(i) for i in range(80)}, CPU)
    frozen = {k.split(".")[1] for k, v in model.named_parameters() if not v.requires_grad}
    assert frozen == {"0", "1"}
