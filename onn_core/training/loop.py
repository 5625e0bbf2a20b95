"""The epoch loop every training in the studio shares, and the state that makes a run resumable.

:func:`train_epoch` is one pass over a training set: shuffled by (seed, epoch) so a resumed run
sees the same batches, optionally augmented, the configured loss, a guard that stops on a NaN or
infinite loss with the reason, and per-step progress. The trainer and compensation both use it.
:class:`RunState` is what a checkpoint holds besides the modules: epoch, history, best weights,
patience, elapsed time, and the run's identity. :func:`divergence` says whether an epoch's end is
a good one to keep (finite weights and losses): a checkpoint is only ever written of those.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import TrainingError
from ..run_files import json_text
from .losses import TransferLoss

StepCallback = Callable[[int, int, float, dict[str, float]], None]  # (step, steps, mean loss, mean terms)
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class EpochTotals:
    """One epoch's mean training loss and mean loss terms (over images)."""

    loss: float
    components: dict[str, float]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random stream of one epoch of one seed: its shuffle and its augmentation."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def train_epoch(
    model: nn.Module,
    loss_fn: TransferLoss,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    optimiser: torch.optim.Optimizer,
    *,
    epoch: int,
    seed: int,
    batch_size: int,
    augment: Augment | None = None,
    teacher_inputs: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
    divergence_hint: str = "Lower the learning rate.",
    log: logging.Logger | None = None,
) -> EpochTotals:
    """One optimisation pass over ``inputs`` (epoch is 0-based); returns the epoch's mean loss and terms.

    ``teacher_inputs``: what the teacher sees of each image when it is not the student's input
    (compensation's raw images behind captured maps). A NaN or infinite loss raises
    TrainingError saying where it happened and ``divergence_hint`` (logged to ``log`` too).
    """
    model.train()
    generator = epoch_generator(seed, epoch)
    order = torch.randperm(len(inputs), generator=generator)
    steps = math.ceil(len(inputs) / batch_size)
    running, seen, sums = 0.0, 0, {}
    for step in range(steps):
        index = order[step * batch_size : (step + 1) * batch_size]
        images = inputs[index] if augment is None else augment(inputs[index], generator)
        extra = {} if teacher_inputs is None else {"teacher_images": teacher_inputs[index]}
        _, parts = loss_fn(model, images, targets[index], index, **extra)
        if not torch.isfinite(parts.total):
            message = (
                f"the loss became {float(parts.total.detach())} at epoch {epoch + 1}, step {step + 1} "
                f"(learning rate {optimiser.param_groups[0]['lr']:.3g}). {divergence_hint}"
            )
            if log is not None:
                log.error(message)
            raise TrainingError(message)
        optimiser.zero_grad(set_to_none=True)
        parts.total.backward()
        optimiser.step()
        running += float(parts.total.detach()) * len(index)
        for name, value in parts.components.items():
            sums[name] = sums.get(name, 0.0) + value * len(index)
        seen += len(index)
        if on_step is not None:  # every step: callers throttle, and a job's cancel is checked here
            on_step(step + 1, steps, running / seen, {name: total / seen for name, total in sums.items()})
    return EpochTotals(running / max(seen, 1), {name: total / max(seen, 1) for name, total in sums.items()})


def divergence(model: nn.Module, losses: dict[str, float]) -> str | None:
    """Why the model's state is not a good one to keep, or None if it is.

    Good means every weight and buffer of ``model`` and every loss in ``losses`` (name → value,
    e.g. ``{"training loss": …, "validation loss": …}``) is finite. Weights blown up to huge but
    finite values give an infinite or NaN validation loss, so they are caught through it.
    """
    for name, value in losses.items():
        if not math.isfinite(value):
            return f"the {name} became {value}"
    with torch.no_grad():
        broken = [name for name, tensor in model.state_dict().items()
                  if tensor.is_floating_point() or tensor.is_complex()
                  if not bool(torch.isfinite(tensor).all())]  # fmt: skip
    if broken:
        listed = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        return f"the weights became infinite or NaN ({listed})"
    return None


@dataclass
class RunState:
    """Where a run stands after ``epoch`` epochs: what its checkpoint holds besides the modules.

    Attributes:
        run_id: the run's identity (config and design); a checkpoint of another run is not resumed.
        epoch: epochs finished. history: one row per epoch. best_score / best_model: the best
        validation score so far and the weights that reached it. stale: epochs since it improved.
        elapsed_s: training seconds over every session of the run.
    """

    run_id: str
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -math.inf
    best_model: dict[str, torch.Tensor] | None = None
    stale: int = 0
    elapsed_s: float = 0.0

    def record(self, row: dict[str, Any], score: float, model: nn.Module) -> None:
        """Close an epoch: its history row and validation score (the best weights are kept)."""
        self.epoch += 1
        self.history.append(row)
        if score > self.best_score:
            self.best_score, self.best_model, self.stale = score, copy.deepcopy(model.state_dict()), 0
        else:
            self.stale += 1

    def patience_spent(self, patience: int | None) -> bool:
        """Early stopping: no better validation score for ``patience`` epochs."""
        return bool(patience) and self.best_model is not None and self.stale >= patience

    def to_checkpoint(self, model: nn.Module, optimiser: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
        """Everything a resumed run needs (the RNG too), as ``torch.load(weights_only=True)`` reads it."""
        return {
            "run_id": self.run_id, "rng_state": torch.get_rng_state(), "elapsed_s": self.elapsed_s,
            "epoch": self.epoch, "model": model.state_dict(), "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(), "history": json_text(self.history, indent=None),
            "best_score": self.best_score, "best_model": self.best_model, "stale": self.stale,
        }  # fmt: skip

    @classmethod
    def from_checkpoint(
        cls, state: dict[str, Any], model: nn.Module, optimiser: torch.optim.Optimizer, scheduler: Any
    ) -> RunState:
        """Restore the modules and the RNG from a checkpoint of this run; returns where it stood."""
        model.load_state_dict(state["model"])
        # The state (moments, steps) comes from the checkpoint; the implementation stays the one
        # built for this run (a checkpoint from before fused AdamW must not switch it off).
        built = [{key: group[key] for key in ("fused", "foreach") if key in group} for group in optimiser.param_groups]
        optimiser.load_state_dict(state["optimiser"])
        for group, implementation in zip(optimiser.param_groups, built, strict=True):
            group.update(implementation)
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_state"])
        return cls(state["run_id"], state["epoch"], json.loads(state["history"]), state["best_score"],
                   state["best_model"], state["stale"], state["elapsed_s"])  # fmt: skip
