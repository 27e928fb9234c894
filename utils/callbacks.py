"""Training events and the callbacks registered on them, with YOLOv5's hook names.

``train.run(..., callbacks=cb)`` fires, in this order (E epochs, B batches per epoch):

    on_pretrain_routine_start()                         once, before the data and model are set up
    on_pretrain_routine_end(labels, names)              once: labels (n, 5) of the training split
    on_train_start()                                    once, before the first epoch
    on_train_epoch_start(epoch)                         E times
    on_train_batch_start(ni, epoch)                     E * B times (ni counts batches over the whole run)
    on_train_batch_end(ni, model, imgs, targets, paths, mloss)   E * B times
    on_train_epoch_end(epoch)                           E times
    on_val_start() / on_val_end(results)                around each validation
    on_fit_epoch_end(values, epoch, best_fitness, fitness)       E times: values is the results.csv row
    on_model_save(last, epoch, final_epoch, best_fitness, fitness)  after each checkpoint write
    on_train_end(last, best, epoch, results)            once, after the final validation

A callback stops training with ``callbacks.stop_training = True`` (for example from on_fit_epoch_end, or from
on_train_batch_end to stop in the middle of an epoch); the run then ends like an early stop: the epoch's
checkpoint is written and best.pt is validated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HOOKS = (
    "on_pretrain_routine_start",
    "on_pretrain_routine_end",
    "on_train_start",
    "on_train_epoch_start",
    "on_train_batch_start",
    "on_train_batch_end",
    "on_train_epoch_end",
    "on_val_start",
    "on_val_end",
    "on_fit_epoch_end",
    "on_model_save",
    "on_train_end",
)


class Callbacks:
    """Named callbacks per hook, run in registration order."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[dict[str, Any]]] = {hook: [] for hook in HOOKS}
        self.stop_training = False

    def register_action(self, hook: str, name: str = "", callback: Callable[..., object] | None = None) -> None:
        """Call ``callback(*args, **kwargs)`` whenever ``hook`` runs; ``name`` identifies it in get_registered."""
        if hook not in self._callbacks:
            raise KeyError(f"hook '{hook}' not found in callbacks; known hooks: {', '.join(HOOKS)}")
        if not callable(callback):
            raise TypeError(f"callback '{callback}' for hook '{hook}' is not callable")
        self._callbacks[hook].append({"name": name, "callback": callback})

    def get_registered_actions(
        self, hook: str | None = None
    ) -> list[dict[str, Any]] | dict[str, list[dict[str, Any]]]:
        """The registered entries ({'name', 'callback'}) of ``hook``, or of every hook as a dict."""
        return self._callbacks[hook] if hook else self._callbacks

    def run(self, hook: str, *args: Any, **kwargs: Any) -> None:
        """Run every callback of ``hook`` with the given arguments."""
        if hook not in self._callbacks:
            raise KeyError(f"hook '{hook}' not found in callbacks; known hooks: {', '.join(HOOKS)}")
        for entry in self._callbacks[hook]:
            entry["callback"](*args, **kwargs)

    def remove_actions(self, name: str) -> None:
        """Unregister every callback registered under ``name``."""
        for hook, entries in self._callbacks.items():
            self._callbacks[hook] = [e for e in entries if e["name"] != name]
