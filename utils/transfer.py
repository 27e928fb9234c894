"""Structure-aware weight transfer: pretrained weights into a model whose layer list differs from the checkpoint's.

State-dict keys name layers by index (``model.{i}.…``), so one inserted or removed row shifts every later key and
plain key matching starts the rest of the network, head and Detect included, from random weights. Here the
checkpoint's yaml rows are aligned with the new model's (a weighted longest common subsequence over the rows: two
rows may pair when their module types agree, and a pair is worth one more than the number of its tensors whose
name and shape agree), then every checkpoint tensor whose shape fits is loaded under the key of the row it
was aligned with. Rows between the same two aligned neighbours, as many on each side (a module replaced in
place), pair in order too: their tensors load where name and shape agree, as index matching would have done.
``from`` indices are never compared: they shift after an insertion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from utils.checkpoints import transfer_weights
from utils.general import LOGGER

LAYER_KEY = re.compile(r"model\.(\d+)\.(.+)")


@dataclass
class RowPair:
    """One line of the transfer table: checkpoint row ``src`` -> model row ``dst`` (None on the side that lacks
    it), its module types, how the rows were paired ('same', 'replaced', or '' for an unpaired row) and the
    checkpoint tensor names (within the layer) that were loaded."""

    src: int | None
    dst: int | None
    src_type: str = ""
    dst_type: str = ""
    kind: str = ""
    loaded: list[str] = field(default_factory=list)


@dataclass
class TransferReport:
    """What a transfer did: ``mapping`` {checkpoint key: model key} of every loaded tensor, the row table, and the
    totals behind the summary line."""

    mapping: dict[str, str]
    rows: list[RowPair]
    checkpoint_tensors: int
    model_tensors: int
    model_params: int
    transferred_params: int

    @property
    def transferred(self) -> int:
        return len(self.mapping)

    def summary(self) -> str:
        ckpt_pct = 100 * self.transferred / max(self.checkpoint_tensors, 1)
        param_pct = 100 * self.transferred_params / max(self.model_params, 1)
        return (f"Transferred {self.transferred}/{self.model_tensors} tensors: {ckpt_pct:.1f}% of the checkpoint, "
                f"{param_pct:.1f}% of the new model's parameters")


def yaml_rows(model_yaml: dict) -> list[str] | None:
    """Module type of each row (backbone then head) of a model yaml ('nn.Upsample' -> 'Upsample'); None when the
    yaml has no well-formed row lists."""
    rows = []
    for part in ("backbone", "head"):
        section = model_yaml.get(part)
        if not isinstance(section, list):
            return None
        for row in section:
            if not isinstance(row, (list, tuple)) or len(row) != 4:
                return None
            rows.append(str(row[2]).rsplit(".", 1)[-1])
    return rows


def layer_shapes(state_dict: dict[str, torch.Tensor], n_rows: int) -> list[dict[str, torch.Size]] | None:
    """Per row i, {name within the layer: shape} of the state dict's ``model.{i}.…`` entries; None when a key
    names a row beyond ``n_rows`` (the state dict does not belong to that yaml)."""
    layers: list[dict[str, torch.Size]] = [{} for _ in range(n_rows)]
    for key, value in state_dict.items():
        m = LAYER_KEY.fullmatch(key)
        if m is None:
            continue
        i = int(m.group(1))
        if i >= n_rows:
            return None
        layers[i][m.group(2)] = value.shape
    return layers


def _fitting(src: dict[str, torch.Size], dst: dict[str, torch.Size]) -> list[str]:
    """Names of ``src`` that ``dst`` has with the same shape."""
    return [name for name, shape in src.items() if dst.get(name) == shape]


def align_rows(src_types: list[str], src_layers: list[dict], dst_types: list[str],
               dst_layers: list[dict]) -> list[RowPair]:
    """Pair the rows of two layer lists (see module docstring); every row of both appears once, in order."""
    n, m = len(src_types), len(dst_types)

    def score(i: int, j: int) -> int:
        if src_types[i] != dst_types[j]:
            return -1
        return 1 + len(_fitting(src_layers[i], dst_layers[j]))

    best = [[0] * (m + 1) for _ in range(n + 1)]  # best[i][j]: top score aligning src[i:] with dst[j:]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            s = score(i, j)
            best[i][j] = max(best[i + 1][j], best[i][j + 1], s + best[i + 1][j + 1] if s > 0 else 0)
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < n and j < m:
        s = score(i, j)
        if s > 0 and best[i][j] == s + best[i + 1][j + 1]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            i += 1
        else:
            j += 1

    table: list[RowPair] = []
    prev_i = prev_j = -1
    for i, j in [*pairs, (n, m)]:  # (n, m): a sentinel closing the last gap
        gap_src, gap_dst = list(range(prev_i + 1, i)), list(range(prev_j + 1, j))
        if gap_src and len(gap_src) == len(gap_dst):  # modules replaced in place
            table += [RowPair(a, b, src_types[a], dst_types[b], "replaced") for a, b in zip(gap_src, gap_dst)]
        else:
            table += [RowPair(a, None, src_types[a]) for a in gap_src]
            table += [RowPair(None, b, dst_type=dst_types[b]) for b in gap_dst]
        if i < n:
            table.append(RowPair(i, j, src_types[i], dst_types[j], "same"))
        prev_i, prev_j = i, j
    return table


def transfer_by_structure(model: nn.Module, ckpt_yaml: dict, state_dict: dict[str, torch.Tensor],
                          exclude: tuple[str, ...] | list[str] = ()) -> TransferReport | None:
    """Load ``state_dict`` (of a model built from ``ckpt_yaml``) into ``model`` (which has ``.yaml``) by aligning
    their rows; tensors whose model key contains one of ``exclude`` stay new. Logs the per-row table and the
    summary line and returns the report; None (nothing loaded) when either yaml has no usable row list."""
    src_types, dst_types = yaml_rows(ckpt_yaml), yaml_rows(getattr(model, "yaml", {}) or {})
    own = model.state_dict()
    src_layers = layer_shapes(state_dict, len(src_types)) if src_types else None
    dst_layers = layer_shapes(own, len(dst_types)) if dst_types else None
    if src_layers is None or dst_layers is None:
        return None
    table = align_rows(src_types, src_layers, dst_types, dst_layers)
    mapping = {}
    for row in table:
        if row.src is None or row.dst is None:
            continue
        for name in _fitting(src_layers[row.src], dst_layers[row.dst]):
            dst_key = f"model.{row.dst}.{name}"
            if not any(x in dst_key for x in exclude):
                mapping[f"model.{row.src}.{name}"] = dst_key
                row.loaded.append(name)
    model.load_state_dict({dst: state_dict[src].to(own[dst].dtype) for src, dst in mapping.items()}, strict=False)

    params = dict(model.named_parameters())
    report = TransferReport(
        mapping=mapping, rows=table, checkpoint_tensors=len(state_dict), model_tensors=len(own),
        model_params=sum(p.numel() for p in params.values()),
        transferred_params=sum(params[k].numel() for k in mapping.values() if k in params))
    LOGGER.info(format_table(report, src_layers, dst_layers))
    LOGGER.info(report.summary())
    return report


def format_table(report: TransferReport, src_layers: list[dict], dst_layers: list[dict]) -> str:
    """The per-row table: checkpoint row -> model row, module types, tensors loaded of the checkpoint row's, and
    how many of the model row's tensors stayed new."""
    lines = [f"{'from':>5} {'to':>4}  {'checkpoint module':<20} {'model module':<20} {'tensors':>9}  stayed new"]
    for row in report.rows:
        src_n = len(src_layers[row.src]) if row.src is not None else 0
        dst_n = len(dst_layers[row.dst]) if row.dst is not None else 0
        loaded = f"{len(row.loaded)}/{src_n}" if row.src is not None else "-"
        if row.dst is None:
            new = "(dropped)"
        elif not row.loaded:
            new = f"all {dst_n}" if dst_n else "-"
        else:
            new = str(dst_n - len(row.loaded)) if dst_n > len(row.loaded) else "-"
        kind = " (replaced)" if row.kind == "replaced" else ""
        lines.append(f"{_cell(row.src):>5} {_cell(row.dst):>4}  {row.src_type:<20} {row.dst_type + kind:<20} "
                     f"{loaded:>9}  {new}")
    return "\n".join(lines)


def _cell(index: int | None) -> str:
    return "-" if index is None else str(index)


def transfer_pretrained(model: nn.Module, ckpt_yaml: dict, state_dict: dict[str, torch.Tensor],
                        exclude: tuple[str, ...] | list[str] = ()) -> int:
    """Pretrained weights into a new model: by key (``transfer_weights``) when both have the same module types
    row by row, else by structure (``transfer_by_structure``), falling back to keys when the checkpoint's yaml
    has no row lists. Returns the number of tensors transferred."""
    src_types, dst_types = yaml_rows(ckpt_yaml or {}), yaml_rows(getattr(model, "yaml", {}) or {})
    if src_types is not None and dst_types is not None and src_types != dst_types:
        report = transfer_by_structure(model, ckpt_yaml, state_dict, exclude)
        if report is not None:
            return report.transferred
    return transfer_weights(model, state_dict, exclude=exclude)[0]
