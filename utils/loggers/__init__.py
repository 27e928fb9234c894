"""Training loggers as callbacks (see utils/callbacks.py): results.csv and the plots, and TensorBoard when the
tensorboard package is installed. train.py registers them by default.

Files in the run folder: results.csv (one row per epoch, utils/results_csv.py), results.png (at the end), labels.jpg,
train_batch{0,1,2}.jpg (unless plots are off) and the TensorBoard event file (events.out.tfevents.*) with every
results.csv column and the learning rates as scalars, the first batches and the final plots (results, PR curve,
F1 curve, confusion matrix) as images, and the model graph when torch.jit can trace the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from utils.callbacks import Callbacks
from utils.general import LOGGER, colorstr
from utils.plots import plot_images, plot_labels, plot_results
from utils.results_csv import RESULTS_COLUMNS, append_results_row
from utils.torch_utils import de_parallel

if TYPE_CHECKING:  # tensorboard is optional: imported for real only in tensorboard_writer
    from torch.utils.tensorboard import SummaryWriter

PLOTTED_BATCHES = 3  # train_batch0.jpg .. train_batch2.jpg
FINAL_PLOTS = ("results.png", "PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png", "confusion_matrix.png")


def tensorboard_writer(save_dir: str | Path) -> SummaryWriter | None:
    """A SummaryWriter on ``save_dir``, or None when the tensorboard package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional
        return None
    LOGGER.info(f"{colorstr('TensorBoard: ')}Start with 'tensorboard --logdir {Path(save_dir).parent}'")
    return SummaryWriter(str(save_dir))


class Loggers:
    """results.csv, plots and TensorBoard, each method named after the hook it listens to."""

    HOOKS = ("on_pretrain_routine_end", "on_train_batch_end", "on_fit_epoch_end", "on_train_end")

    def __init__(
        self, save_dir: str | Path, names: dict[int, str] | None = None, plots: bool = True, tensorboard: bool = True,
        columns: Sequence[str] = RESULTS_COLUMNS,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.columns = tuple(columns)  # results.csv header: detection's, or a task's (segmentation adds mask columns)
        self.names = names
        self.plots = plots
        self.csv = self.save_dir / "results.csv"
        self.tb = tensorboard_writer(self.save_dir) if tensorboard else None

    def register(self, callbacks: Callbacks, name: str = "loggers") -> Loggers:
        for hook in self.HOOKS:
            callbacks.register_action(hook, name=name, callback=getattr(self, hook))
        return self

    def close(self) -> None:
        """Flush and close the TensorBoard file (also when training ended with an error)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def on_pretrain_routine_end(self, labels: np.ndarray | None, names: dict[int, str]) -> None:
        self.names = names
        if self.plots and labels is not None:
            self._image("labels", plot_labels(labels, names, self.save_dir), 0)

    def on_train_batch_end(
        self,
        ni: int,
        model: torch.nn.Module,
        imgs: torch.Tensor,
        targets: torch.Tensor,
        paths: Sequence[str],
        mloss: torch.Tensor,
    ) -> None:
        if self.plots and self.tb is not None and ni == 0:  # a plot too: --noplots skips it, as official does
            self._graph(model, imgs.shape[-2:])
        if self.plots and ni < PLOTTED_BATCHES:
            grid = plot_images(imgs, targets, paths, self.save_dir / f"train_batch{ni}.jpg", names=self.names)
            if self.tb is not None:
                self.tb.add_image(f"train_batch{ni}", grid, 0, dataformats="HWC")

    def on_fit_epoch_end(self, values: Sequence[float], epoch: int, best_fitness: float, fitness: float) -> None:
        append_results_row(self.csv, values, self.columns)
        if self.tb is not None:
            for key, value in zip(self.columns[1:], values[1:]):
                self.tb.add_scalar(key, value, epoch)
            self.tb.add_scalar("x/fitness", fitness, epoch)

    def on_train_end(self, last: Path, best: Path, epoch: int, results: tuple) -> None:
        if self.plots and self.csv.exists():
            plot_results(file=self.csv)
        for name in FINAL_PLOTS:
            self._image(Path(name).stem, self.save_dir / name, epoch)
        self.close()

    def _image(self, tag: str, file: str | Path | None, step: int) -> None:
        """Add a saved plot file to TensorBoard (nothing when TensorBoard is off or the file is missing)."""
        if self.tb is None or file is None or not Path(file).is_file():
            return
        image = cv2.imread(str(file))
        if image is not None:
            self.tb.add_image(tag, image[..., ::-1].copy(), step, dataformats="HWC")

    def _graph(self, model: torch.nn.Module, shape: Sequence[int]) -> None:
        """Log the model graph traced on a copy in eval mode (the training model and its BatchNorm statistics
        stay untouched); models that torch.jit cannot trace get a warning instead."""
        try:
            probe = deepcopy(de_parallel(model)).float().eval()
            p = next(probe.parameters())
            im = torch.zeros((1, 3, *shape), device=p.device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about Python control flow
                self.tb.add_graph(torch.jit.trace(probe, im, strict=False, check_trace=False), [])  # no re-run check
        except Exception as e:  # tracing is best effort: some plug-in modules use data-dependent Python logic
            LOGGER.warning(f"WARNING: TensorBoard graph not logged: {e}")
