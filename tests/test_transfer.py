"""Structure-aware weight transfer (utils/transfer.py): rows aligned by module type and tensor shapes."""

import pytest
import torch

from models.yolo import Model
from utils.checkpoints import checkpoint_model_parts, make_checkpoint
from utils.transfer import align_rows, transfer_by_structure, transfer_pretrained


@pytest.fixture(scope="module")
def yolov5n_checkpoint():
    """(yaml, state dict) of a randomly initialised yolov5n (seed 0) saved as a project checkpoint."""
    torch.manual_seed(0)
    model = Model("yolov5n.yaml")
    for m in model.modules():  # BatchNorm statistics away from their init values, so a wrong copy shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    yaml, _, sd = checkpoint_model_parts(make_checkpoint(model, half=False))
    return yaml, sd


def test_align_rows_follows_an_insertion_and_a_replacement():
    conv, c3 = {"w": torch.Size([4, 3])}, {"w": torch.Size([4, 4])}
    src = ["Conv", "C3", "SPPF", "Conv", "Detect"]
    dst = ["Conv", "C3", "ScConv", "Focal", "Conv", "Detect"]
    shapes = {"Conv": conv, "C3": c3, "SPPF": c3, "ScConv": c3, "Focal": c3, "Detect": conv}
    table = align_rows(src, [shapes[t] for t in src], dst, [shapes[t] for t in dst])
    pairs = [(r.src, r.dst, r.kind) for r in table]
    # SPPF and the two new rows sit between the same aligned neighbours, 1 vs 2 rows: no pairing, nothing loaded
    assert pairs == [(0, 0, "same"), (1, 1, "same"), (2, None, ""), (None, 2, ""), (None, 3, ""), (3, 4, "same"),
                     (4, 5, "same")]
    table = align_rows(["Conv", "SPPF", "Detect"], [conv, c3, conv], ["Conv", "Focal", "Detect"], [conv, c3, conv])
    assert [(r.src, r.dst, r.kind) for r in table] == [(0, 0, "same"), (1, 1, "replaced"), (2, 2, "same")]


def test_inserted_row_receives_every_tensor_in_its_shifted_place(yolov5n_checkpoint, info_log):
    yaml, sd = yolov5n_checkpoint
    torch.manual_seed(1)
    variant = Model("yolov5n_ScConv.yaml")  # ScConv inserted as row 9, before SPPF
    before = {k: v.clone() for k, v in variant.state_dict().items()}
    with info_log() as log:
        report = transfer_by_structure(variant, yaml, sd)
    own = variant.state_dict()
    assert set(report.mapping) == set(sd)  # every checkpoint tensor placed
    for src, dst in report.mapping.items():
        layer = int(src.split(".")[1])
        assert dst == src.replace(f"model.{layer}.", f"model.{layer + (layer >= 9)}.", 1)
        assert torch.equal(own[dst], sd[src]), (src, dst)
    new = [k for k in own if k not in report.mapping.values()]
    assert new and all(k.startswith("model.9.") for k in new)  # only the inserted ScConv stays new
    assert all(torch.equal(own[k], before[k]) for k in new)
    ckpt_pct = 100.0
    assert f"Transferred {len(sd)}/{len(own)} tensors: {ckpt_pct:.1f}% of the checkpoint" in log.lines[-1]
    assert any(" 9   10  SPPF" in line for line in log.lines[-2].splitlines())


def test_removed_row_and_replaced_row(yolov5n_checkpoint):
    yaml, sd = yolov5n_checkpoint
    torch.manual_seed(0)
    source = Model("yolov5n_ScConv.yaml")
    plain = Model("yolov5n.yaml")
    report = transfer_by_structure(plain, source.yaml, source.state_dict())
    assert sorted(report.mapping.values()) == sorted(plain.state_dict())  # the plain model is filled entirely
    assert not any(k.startswith("model.9.") for k in report.mapping)  # ScConv's tensors had nowhere to go

    focal = Model("yolov5n_Focal.yaml")  # FocalModulation replaces SPPF (row 9)
    report = transfer_by_structure(focal, yaml, sd)
    outside = {k for k in sd if not k.startswith("model.9.")}
    assert set(report.mapping) == outside and all(report.mapping[k] == k for k in outside)


def test_identical_layer_lists_keep_key_matching(yolov5n_checkpoint, info_log):
    yaml, sd = yolov5n_checkpoint
    model = Model("yolov5n.yaml", nc=3)
    with info_log() as log:
        n = transfer_pretrained(model, yaml, sd, exclude=("anchor",))
    assert n == len(sd) - 7  # the anchors and the three Detect convs' weights and biases (nc differs)
    assert f"Transferred {n}/{len(sd)} items from pretrained weights" in log.lines
