"""Training losses by name, composed with weights from the config: task, Hinton KD and NTKD.

A method is a weighted sum of named terms (:data:`METHOD_TERMS`):

    e2e      task
    kd       (1 − kd_alpha)·task + kd_alpha·kd          kd = T²·KL(teacher_T ‖ student_T)
    ntkd     alpha·task + beta·ntk                      ntk = D(Θ_teacher, Θ_student)
    kd+ntkd  (1 − kd_alpha)·task + kd_alpha·kd + beta·ntk

Every term is differentiable with respect to the student's parameters only: the teacher is
frozen (eval mode, ``requires_grad`` off, its outputs and kernels computed without a graph).
Segmentation KD compares per-pixel Bernoulli distributions, KL(σ(t/T) ‖ σ(s/T)) averaged over
pixels; the segmentation NTK pools the logit maps (see :mod:`.ntk`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.frontends import held_kernels
from .config import TrainConfig
from .metrics import task_loss
from .ntk import (
    TeacherKernelTable,
    TeacherSketch,
    kernel_distance,
    kernel_distance_unbiased,
    ntk_estimate,
    ntk_exact,
    ntk_structured,
)

METHOD_TERMS: dict[str, Callable[[TrainConfig], dict[str, float]]] = {
    "e2e": lambda c: {"task": 1.0},
    "kd": lambda c: {"task": 1.0 - c.kd_alpha, "kd": c.kd_alpha},
    "ntkd": lambda c: {"task": c.alpha, "ntk": c.beta},
    "kd+ntkd": lambda c: {"task": 1.0 - c.kd_alpha, "kd": c.kd_alpha, "ntk": c.beta},
}


def needs_teacher(method: str) -> bool:
    return method != "e2e"


def uses_ntk(method: str) -> bool:
    return "ntkd" in method.split("+")


def hinton_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float, task: str) -> torch.Tensor:
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)); per-pixel Bernoulli KL for segmentation."""
    if task == "classification":
        target = F.log_softmax(teacher / temperature, dim=1)
        prediction = F.log_softmax(student / temperature, dim=1)
        divergence = F.kl_div(prediction, target, log_target=True, reduction="batchmean")
    else:
        p = torch.sigmoid(teacher / temperature)
        entropy = F.binary_cross_entropy_with_logits(teacher / temperature, p)
        divergence = F.binary_cross_entropy_with_logits(student / temperature, p) - entropy
    return temperature**2 * divergence


def _deterministic_in_training(model: nn.Module) -> bool:
    """True when a training-mode forward equals the mean function (no noise, BN, dropout)."""
    from ..models import OpticalFrontend

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm | nn.Dropout):
            return False
        if isinstance(module, OpticalFrontend) and module.sensor is not None:
            return False
    return True


def student_parameters(model: nn.Module, which: str) -> Callable[[str], bool] | None:
    """Which of the student's parameters its NTK is taken over: all, the optics, or the backend."""
    from ..models import OpticalFrontend

    if which == "all":
        return None
    optical = {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if isinstance(module, OpticalFrontend)
        for name, _ in module.named_parameters()
    }
    if which == "frontend":
        return optical.__contains__
    return lambda name: name not in optical


@dataclass
class LossParts:
    total: torch.Tensor
    components: dict[str, float]  # unweighted value of each term, for logs and progress


class TransferLoss:
    """The configured method's loss for one minibatch.

    Args:
        config: the training config (method, weights, NTK engines).
        task: "classification" or "segmentation".
        teacher: the frozen teacher (None for e2e).
        sketch: the teacher's cached NTK sketch over the training images (teacher_ntk "sketch").
        teacher_outputs: the teacher's outputs on the training split, in its order, when they are
            computed once (inputs not augmented); the KD term then reads them by ``index``
            instead of running the teacher on every minibatch.
        teacher_table: the teacher's exact kernel between every pair of training images
            (teacher_ntk "exact" or "structured", computed once); read by ``index``.
    """

    def __init__(
        self, config: TrainConfig, task: str, teacher: nn.Module | None = None, sketch: TeacherSketch | None = None,
        teacher_outputs: torch.Tensor | None = None, teacher_table: TeacherKernelTable | None = None,
    ) -> None:  # fmt: skip
        self.config, self.task, self.teacher, self.sketch = config, task, teacher, sketch
        self.teacher_outputs, self.teacher_table = teacher_outputs, teacher_table
        self.weights = METHOD_TERMS[config.method](config)
        if teacher is not None:
            teacher.eval()
            for parameter in teacher.parameters():
                parameter.requires_grad_(False)

    def __call__(
        self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor, index: torch.Tensor,
        teacher_images: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:  # fmt: skip
        """(student outputs, loss parts); ``index`` locates the images in the training split.

        ``teacher_images``: what the teacher sees when the student's input is not the raw image
        (captured feature maps of those images, in compensation); default ``images``.
        """
        # Precomputed teacher outputs stand only for the raw training images they were computed on.
        known = self.teacher_outputs[index] if self.teacher_outputs is not None and teacher_images is None else None
        with held_kernels(model):  # the task, KD and kernel forwards share one PSF simulation
            return self._loss(model, images, targets, index, images if teacher_images is None else teacher_images,
                              known)  # fmt: skip

    def _loss(
        self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor, index: torch.Tensor,
        teacher_images: torch.Tensor, teacher_outputs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LossParts]:  # fmt: skip
        outputs = model(images)
        terms: dict[str, torch.Tensor] = {"task": task_loss(self.task, outputs, targets)}
        if "kd" in self.weights:
            if teacher_outputs is None:
                with torch.no_grad():
                    teacher_outputs = self.teacher(teacher_images)
            terms["kd"] = hinton_kd(outputs, teacher_outputs, self.config.temperature, self.task)
        if "ntk" in self.weights:
            # The kernels compare the first ntk_batch images of the (shuffled) minibatch.
            kept = slice(0, self.config.ntk_batch)
            teacher_kernel = self.teacher_kernel(teacher_images[kept], index[kept])
            student_kernel = self.student_kernel(model, images[kept], outputs[kept])
            how = self.config.ntk_normalisation
            if isinstance(student_kernel, tuple):
                terms["ntk"] = kernel_distance_unbiased(teacher_kernel, *student_kernel, how)
            else:
                terms["ntk"] = kernel_distance(teacher_kernel, student_kernel, how)
        total = sum(self.weights[name] * value for name, value in terms.items())
        return outputs, LossParts(total, {name: float(value.detach()) for name, value in terms.items()})

    def teacher_kernel(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        config = self.config
        if config.teacher_ntk == "sketch":
            return self.sketch.kernel(index)
        if self.teacher_table is not None:
            return self.teacher_table.kernel(index)
        with torch.no_grad():
            if config.teacher_ntk == "exact":
                return ntk_exact(self.teacher, images, output_pool=config.ntk_output_pool)
            if config.teacher_ntk == "structured":
                return ntk_structured(self.teacher, images, output_pool=config.ntk_output_pool)
            return ntk_estimate(
                self.teacher, images, draws=config.ntk_draws, epsilon=config.ntk_epsilon,
                output_pool=config.ntk_output_pool,
            )  # fmt: skip

    def student_kernel(
        self, model: nn.Module, images: torch.Tensor, outputs: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Θ_student, or two independent estimates when the loss is the unbiased product."""
        config = self.config
        include = student_parameters(model, config.ntk_parameters)
        if config.ntk_engine == "exact":
            return ntk_exact(model, images, include=include, output_pool=config.ntk_output_pool)
        if config.ntk_engine == "structured":
            return ntk_structured(model, images, include=include, output_pool=config.ntk_output_pool)
        # The task forward already evaluated f(X; θ) when training mode is the mean function.
        base = outputs if _deterministic_in_training(model) else None
        return ntk_estimate(
            model, images, draws=config.ntk_draws, epsilon=config.ntk_epsilon, output_pool=config.ntk_output_pool,
            base=base, split=config.ntk_unbiased, include=include,
        )  # fmt: skip
