"""The model zoo: hybrid ONN students (optical frontend + digital backend) and electronic teachers.

Students (configured from the design object; the method's architectures). The classification
students use every kernel the design's layout fits: the default design (4 × 4 mm, 0.94 mm
kernels, signed) fits the method's 8; a 16-kernel design gives Polychromatic Meta's 16.

* ``compressed-meta`` — 8 kernels 7×7, monochrome, 2 FC layers (MNIST-class tasks);
* ``polychromatic-meta`` — 16 kernels 7×7 on RGB, 3 FC layers (CIFAR-10);
* ``segmentation-meta`` — 56 kernels 3×3 in groups of 8/16/32 on the image at full, ½ and ¼
  resolution (sensor binning), mimicking three encoder depths, with an up-convolution decoder
  (a design that fits fewer than 56 kernels splits what it has 1:2:4);
* ``random-readout`` — fixed random kernels and a 1-layer readout (the random-PSF ablation).

Teachers: ``lenet`` (LeNet-5 with ReLU and max-pooling), ``lenet-wide`` (the same pattern with
32/64 channels, BatchNorm and dropout: the Fashion-MNIST teacher), ``alexnet`` (an AlexNet-style net sized
for 32×32 RGB), ``unet`` (a 3-level U-Net).

The kernel count comes from the design (its layout decides how many fit); a student asking for
more kernels than fit raises a DesignError saying how big the metasurface must be.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..design import Design
from ..errors import DesignError
from .frontends import IdealFrontend, OpticalFrontend, PhysicalFrontend, SensorSettings, realisable_band

FRONTENDS = ("ideal", "physical")


@dataclass(frozen=True)
class FrontendOptions:
    """How to realise the optics: ``kind`` ideal|physical, sensor model, normalisation, init."""

    kind: str = "ideal"
    sensor: SensorSettings | None = None
    normalise_intensity: bool = False
    phase_pixel: float | None = None  # metres, physical frontend only
    seed: int = 0
    band_limit: bool = False  # ideal frontend: keep kernels within the aperture's OTF support


def build_frontend(
    design: Design, kernels: int, options: FrontendOptions, *, taps: int | None = None, scale: int = 1, group: int = 0
) -> OpticalFrontend:
    common = {
        "signed": design.signed_kernels,
        "sensor": options.sensor,
        "normalise_intensity": options.normalise_intensity,
        "scale": scale,
    }
    if options.kind == "ideal":
        taps = taps or design.kernel_taps
        band = realisable_band(design, taps, scale, amplitude=not design.signed_kernels) if options.band_limit else None
        return IdealFrontend(kernels, design.input_channels, taps, band_limit=band, **common)
    if options.kind == "physical":
        if taps is not None and taps != design.kernel_taps:
            design = design.replace(kernel_taps=taps)
        # Each kernel group gets its own initial phase perturbation.
        seed = options.seed * 1_000 + group
        return PhysicalFrontend(design, kernels, phase_pixel=options.phase_pixel, seed=seed, **common)
    raise DesignError("frontend", options.kind, f"must be one of {', '.join(FRONTENDS)}.")


def _require_kernels(design: Design, needed: int, student: str) -> None:
    if design.kernel_count >= needed:
        return
    per_kernel = design.sub_optics_per_kernel
    side = math.ceil(math.sqrt(needed * per_kernel))
    pitch = design.sub_optic_pitch
    raise DesignError(
        "kernel_count",
        design.kernel_count,
        f"the {student} student needs {needed} kernels ({needed * per_kernel} sub-optics) but this design fits "
        f"{design.kernel_count} ({design.n_rows}×{design.n_cols} sub-optics).",
        f"enlarge the metasurface to at least {(side * pitch - design.kernel_spacing) * 1e3:.2f} mm per side, "
        f"or shrink the kernels / spacing.",
    )


class HybridClassifier(nn.Module):
    """Optical frontend → ReLU → max-pool → fully connected layers → class logits."""

    def __init__(
        self, frontend: OpticalFrontend, image_size: tuple[int, int], hidden: Sequence[int], classes: int, pool: int
    ) -> None:
        super().__init__()
        self.frontend, self.pool = frontend, pool
        height, width = (s // frontend.scale // pool for s in image_size)
        widths = [frontend.kernels * height * width, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], classes))
        self.backend = nn.Sequential(*layers)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.frontend(images))
        return F.max_pool2d(features, self.pool) if self.pool > 1 else features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backend(self.features(images).flatten(1))


class BackendOnFeatures(nn.Module):
    """A :class:`HybridClassifier`'s digital part fed feature maps (N, K, H, W) instead of images.

    The maps are what the frontend would output (a camera's captures of real optics, before the
    ReLU); this applies the classifier's ReLU, pooling and backend to them. The backend is the
    classifier's own module (shared, not copied): fine-tuning one fine-tunes the other.
    """

    def __init__(self, classifier: HybridClassifier) -> None:
        super().__init__()
        self.backend, self.pool = classifier.backend, classifier.pool

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = F.relu(features)
        if self.pool > 1:
            features = F.max_pool2d(features, self.pool)
        return self.backend(features.flatten(1))


class HybridSegmenter(nn.Module):
    """Optical kernel groups at full, ½, ¼ … resolution feed an up-convolution decoder.

    Group g sees the image binned by 2^g (its taps are 2^g sensor taps wide), so the groups play
    the role of a U-Net's encoder depths; the decoder upsamples the coarsest maps with transposed
    convolutions and fuses each finer group, like U-Net skip connections.
    """

    def __init__(self, frontends: Sequence[OpticalFrontend], decoder_width: int = 16) -> None:
        super().__init__()
        self.groups = nn.ModuleList(frontends)
        ups, fuses = [], []
        channels = frontends[-1].kernels
        for finer in reversed(frontends[:-1]):
            ups.append(nn.ConvTranspose2d(channels, decoder_width, kernel_size=2, stride=2))
            fuses.append(nn.Conv2d(decoder_width + finer.kernels, decoder_width, kernel_size=3, padding=1))
            channels = decoder_width
        self.ups, self.fuses = nn.ModuleList(ups), nn.ModuleList(fuses)
        self.head = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        step = 2 ** (len(self.groups) - 1)
        if height % step or width % step:
            raise DesignError(
                "input_height", (height, width), f"the segmentation student needs sizes divisible by {step}."
            )
        maps = [F.relu(group(images)) for group in self.groups]
        x = maps[-1]
        for up, fuse, skip in zip(self.ups, self.fuses, reversed(maps[:-1]), strict=True):
            x = F.relu(fuse(torch.cat([F.relu(up(x)), skip], dim=1)))
        return self.head(x)


class RandomReadout(nn.Module):
    """Fixed random non-negative kernels (random PSFs) and a single trained linear readout."""

    def __init__(self, frontend: OpticalFrontend, image_size: tuple[int, int], classes: int, pool: int) -> None:
        super().__init__()
        self.frontend, self.pool = frontend, pool
        for parameter in frontend.parameters():
            parameter.requires_grad_(False)
        height, width = (s // pool for s in image_size)
        self.readout = nn.Linear(frontend.kernels * height * width, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = F.avg_pool2d(self.frontend(images), self.pool) if self.pool > 1 else self.frontend(images)
        return self.readout(features.flatten(1))


# ---------------------------------------------------------------------------- teachers
class LeNet(nn.Module):
    """LeNet-5 (ReLU, max-pooling): conv 6@5×5 → pool → conv 16@5×5 → pool → 120 → 84 → classes."""

    def __init__(self, channels: int, image_size: tuple[int, int], classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = self.features(torch.zeros(1, channels, *image_size)).numel()
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).flatten(1))


class WideLeNet(nn.Module):
    """LeNet's pattern, wider and regularised: conv 32@5×5 → pool → conv 64@5×5 → pool → 256 → classes.

    A stronger teacher than LeNet-5 for 28×28 garments (Fashion-MNIST), where LeNet-5 is no
    better than the 8-kernel optical student and so has nothing to teach it.
    """

    def __init__(self, channels: int, image_size: tuple[int, int], classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = self.features(torch.zeros(1, channels, *image_size)).numel()
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(flat, 256), nn.ReLU(), nn.Dropout(0.3),
                                        nn.Linear(256, classes))  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).flatten(1))


class AlexNetSmall(nn.Module):
    """AlexNet's pattern (5 convs, 3 pools, 3 FC, dropout) sized for 32×32 RGB."""

    def __init__(self, channels: int, image_size: tuple[int, int], classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = self.features(torch.zeros(1, channels, *image_size)).numel()
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(flat, 512), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, classes),
        )  # fmt: skip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).flatten(1))


def _double_conv(fan_in: int, fan_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(fan_in, fan_out, 3, padding=1), nn.BatchNorm2d(fan_out), nn.ReLU(),
        nn.Conv2d(fan_out, fan_out, 3, padding=1), nn.BatchNorm2d(fan_out), nn.ReLU(),
    )  # fmt: skip


class UNet(nn.Module):
    """U-Net with ``depth`` down/up levels, ``base`` channels at the top, one output logit map."""

    def __init__(self, channels: int, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        widths = [base * 2**level for level in range(depth + 1)]
        self.depth = depth
        self.downs = nn.ModuleList([_double_conv(channels, widths[0])])
        self.downs.extend(_double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.fuses = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        step = 2**self.depth
        if images.shape[-2] % step or images.shape[-1] % step:
            raise DesignError("input_height", tuple(images.shape[-2:]), f"the U-Net needs sizes divisible by {step}.")
        skips = [self.downs[0](images)]
        for down in self.downs[1:]:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()
        for up, fuse in zip(self.ups, self.fuses, strict=True):
            x = fuse(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its task, a builder, and what it is."""

    name: str
    task: str
    role: str  # "student" | "teacher"
    description: str
    build: Callable[..., nn.Module]


def _compressed_meta(design: Design, classes: int, options: FrontendOptions, kernels: int) -> nn.Module:
    frontend = build_frontend(design, kernels, options)
    return HybridClassifier(frontend, (design.input_height, design.input_width), hidden=(128,), classes=classes, pool=2)


def _polychromatic_meta(design: Design, classes: int, options: FrontendOptions, kernels: int) -> nn.Module:
    frontend = build_frontend(design, kernels, options)
    size = (design.input_height, design.input_width)
    return HybridClassifier(frontend, size, hidden=(256, 128), classes=classes, pool=2)


SEGMENTATION_GROUPS = (8, 16, 32)


def segmentation_groups(kernels: int) -> tuple[int, int, int]:
    """Kernels per resolution group: the method's 8/16/32 once 56 fit, else the same 1:2:4 shares.

    Designs with more than 56 kernels still use 56 (the method's architecture); fewer than 3
    cannot fill three groups.
    """
    if kernels >= sum(SEGMENTATION_GROUPS):
        return SEGMENTATION_GROUPS
    if kernels < 3:
        raise DesignError(
            "kernel_count", kernels, "the segmentation student needs at least 3 kernels (one per resolution group).",
            "enlarge the metasurface or shrink the kernels / spacing.",
        )  # fmt: skip
    fine = max(1, round(kernels / 7))
    middle = max(1, round(2 * kernels / 7))
    return fine, middle, kernels - fine - middle


def _segmentation_meta(design: Design, classes: int, options: FrontendOptions, kernels: int) -> nn.Module:
    frontends = [
        build_frontend(design, count, options, taps=3, scale=2**level, group=level)
        for level, count in enumerate(segmentation_groups(kernels))
    ]
    return HybridSegmenter(frontends)


def _random_readout(design: Design, classes: int, options: FrontendOptions, kernels: int) -> nn.Module:
    frontend = build_frontend(design, kernels, FrontendOptions(kind="ideal", sensor=options.sensor))
    with torch.no_grad():  # random PSFs: non-negative, unit sum
        frontend.weight.copy_(torch.rand_like(frontend.weight))
        frontend.weight.div_(frontend.weight.sum(dim=(1, 2, 3), keepdim=True))
    return RandomReadout(frontend, (design.input_height, design.input_width), classes, pool=2)


STUDENTS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry("compressed-meta", "classification", "student",
                   "Compressed Meta: the design's kernels (8 by default, 7×7 taps), 2 FC layers", _compressed_meta),
        ModelEntry("polychromatic-meta", "classification", "student",
                   "Polychromatic Meta: the design's kernels (16 in the method), RGB, 3 FC", _polychromatic_meta),
        ModelEntry("segmentation-meta", "segmentation", "student",
                   "56 kernels 3×3 in groups 8/16/32 (or 1:2:4 of fewer) at full/½/¼ resolution, up-conv decoder",
                   _segmentation_meta),
        ModelEntry("random-readout", "classification", "student",
                   "random fixed PSFs (all kernels the design fits) + 1 linear readout (ablation)", _random_readout),
    )
}  # fmt: skip

TEACHERS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry("lenet", "classification", "teacher", "LeNet-5 (ReLU, max-pool)",
                   lambda channels, size, classes: LeNet(channels, size, classes)),
        ModelEntry("lenet-wide", "classification", "teacher", "LeNet pattern, 32/64 channels, BatchNorm, dropout",
                   lambda channels, size, classes: WideLeNet(channels, size, classes)),
        ModelEntry("alexnet", "classification", "teacher", "AlexNet-style CNN for 32×32 RGB",
                   lambda channels, size, classes: AlexNetSmall(channels, size, classes)),
        ModelEntry("unet", "segmentation", "teacher", "3-level U-Net (16 channels at the top)",
                   lambda channels, size, classes: UNet(channels)),
    )
}  # fmt: skip

def default_student(task: str, channels: int = 1) -> str:
    """The student a design is estimated and trained as unless another is named.

    Segmentation: ``segmentation-meta``; classification: ``polychromatic-meta`` on colour images
    (``channels`` > 1), ``compressed-meta`` on monochrome ones.
    """
    if task == "segmentation":
        return "segmentation-meta"
    if task != "classification":
        raise ValueError(f"unknown task {task!r}; expected classification or segmentation")
    return "polychromatic-meta" if channels > 1 else "compressed-meta"


def default_teacher(task: str) -> str:
    """The teacher trained for a task unless another is named: ``lenet-wide`` or ``unet``."""
    teachers = {"classification": "lenet-wide", "segmentation": "unet"}
    if task not in teachers:
        raise ValueError(f"unknown task {task!r}; expected classification or segmentation")
    return teachers[task]


def build_student(
    name: str, design: Design, classes: int, options: FrontendOptions | None = None, *, kernels: int | None = None
) -> nn.Module:
    """The student ``name`` for ``design`` with ``classes`` outputs (segmentation: 1 logit map).

    ``kernels`` overrides the count the design's layout fits (the estimator's many-kernel bound,
    ablations); by default every kernel the layout fits is used.
    """
    if name not in STUDENTS:
        raise DesignError("student", name, f"unknown student; choose one of {', '.join(STUDENTS)}.")
    if kernels is None:
        _require_kernels(design, 1, name)
        kernels = design.kernel_count
    elif isinstance(kernels, bool) or not isinstance(kernels, int) or kernels < 1:
        raise DesignError("kernel_count", kernels, "must be a whole number ≥ 1.")
    return STUDENTS[name].build(design, classes, options or FrontendOptions(), kernels)


def build_teacher(name: str, channels: int, image_size: tuple[int, int], classes: int) -> nn.Module:
    if name not in TEACHERS:
        raise DesignError("teacher", name, f"unknown teacher; choose one of {', '.join(TEACHERS)}.")
    try:
        return TEACHERS[name].build(channels, image_size, classes)
    except RuntimeError:  # its pooling leaves nothing of so small an image
        height, width = image_size
        raise DesignError(
            "input_height", image_size, f"the {name} teacher cannot read images of {height}×{width} pixels (too small "
            "for its pooling).", "train it at a design's input size (train-teacher --design FILE.json), or add the "
            "data at a larger size (data add NAME PATH --size 28 28).",
        ) from None
