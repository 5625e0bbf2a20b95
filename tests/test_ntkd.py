"""Knowledge transfer: NTK engines against autograd and each other, the losses, and NTKD training."""

import json
import math

import pytest
import torch
from torch import nn

from onn_core.design import Design
from onn_core.errors import TrainingError
from onn_core.models import SensorSettings, build_student, build_teacher
from onn_core.training import TrainConfig, train
from onn_core.training.losses import TransferLoss, hinton_kd
from onn_core.training.ntk import (
    TeacherSketch,
    flat_outputs,
    kernel_distance,
    kernel_distance_unbiased,
    normalise_kernel,
    ntk_estimate,
    ntk_exact,
)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 6 * 6, 5), nn.Tanh(), nn.Linear(5, 4)
    ).double()


def autograd_ntk(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Θ(x, x′) = Σ_c ∇f_c(x)·∇f_c(x′) from one autograd call per sample and output."""
    rows = []
    for image in images:
        outputs = model(image.unsqueeze(0))[0]
        gradients = []
        for value in outputs:
            grads = torch.autograd.grad(value, list(model.parameters()), retain_graph=True)
            gradients.append(torch.cat([g.flatten() for g in grads]))
        rows.append(torch.stack(gradients))
    jacobian = torch.stack(rows)
    return torch.einsum("ncp,mcp->nm", jacobian, jacobian)


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model()
    images = torch.randn(6, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model, images, autograd_ntk(model, images)


def test_exact_ntk_matches_autograd(tiny):
    model, images, reference = tiny
    for max_elements in (2**26, 50):  # whole Jacobian blocks, and blocks split over outputs
        kernel = ntk_exact(model, images, max_elements=max_elements)
        assert torch.allclose(kernel, reference, rtol=1e-5, atol=1e-5 * reference.abs().max())


def test_estimator_agrees_with_exact_within_its_statistical_error(tiny):
    model, images, reference = tiny
    generator = torch.Generator().manual_seed(2)
    estimates = torch.stack(
        [ntk_estimate(model, images, draws=16, epsilon=1e-5, generator=generator) for _ in range(40)]
    )
    mean, error = estimates.mean(0), estimates.std(0) / math.sqrt(len(estimates))
    # Unbiased: every entry within 4.5 standard errors (O(ε) bias is ~1e-5 here).
    assert ((mean - reference).abs() <= 4.5 * error + 1e-6).all()
    # and a single estimate has the advertised spread, ≈ √(2/R) relative on the diagonal.
    relative = (estimates.diagonal(dim1=1, dim2=2) / reference.diagonal()).std()
    assert 0.5 * math.sqrt(2 / 16) < relative < 1.6 * math.sqrt(2 / 16)


def test_split_estimates_give_an_unbiased_kernel_distance(tiny):
    model, images, reference = tiny
    target = reference + torch.eye(len(images)) * reference.diagonal().mean()  # some other kernel
    truth = float(kernel_distance(target, reference, "none"))
    generator = torch.Generator().manual_seed(5)
    plain, unbiased = [], []
    for _ in range(300):
        first, second = ntk_estimate(model, images, draws=2, epsilon=1e-5, generator=generator, split=True)
        unbiased.append(float(kernel_distance_unbiased(target, first, second, "none")))
        plain.append(float(kernel_distance(target, (first + second) / 2, "none")))
    plain_t, unbiased_t = torch.tensor(plain), torch.tensor(unbiased)
    error = unbiased_t.std() / math.sqrt(len(unbiased))
    assert abs(unbiased_t.mean() - truth) < 4 * error
    assert plain_t.mean() > truth + 4 * plain_t.std() / math.sqrt(len(plain))  # squaring adds the variance
    for how in ("cka", "trace", "frobenius"):  # one shared normalisation: exact when both halves agree
        same = kernel_distance_unbiased(target, reference, reference, how)
        assert torch.allclose(same, kernel_distance(target, reference, how))
    with pytest.raises(TrainingError, match="draws ≥ 2"):
        ntk_estimate(model, images, draws=1, split=True)


def test_teacher_sketch_is_an_unbiased_low_rank_kernel(tiny):
    model, images, reference = tiny
    sketch = TeacherSketch(model, images, directions=4096, seed=0, batch_size=4)
    kernel = sketch.kernel(torch.arange(len(images))).double()
    assert sketch.features.shape == (6, 4096, 4)
    assert (kernel - reference).norm() / reference.norm() < 0.08
    subset = torch.tensor([4, 1])
    assert torch.equal(sketch.kernel(subset), sketch.features[subset].flatten(1) @ sketch.features[subset].flatten(1).T)
    assert torch.equal(TeacherSketch.from_features(sketch.features).kernel(subset), sketch.kernel(subset))


def test_segmentation_outputs_are_pooled_before_contraction():
    logits = torch.randn(3, 1, 64, 64)
    assert flat_outputs(logits, 8).shape == (3, 64)
    assert torch.allclose(flat_outputs(logits, 8)[:, 0], logits[:, 0, :8, :8].mean(dim=(1, 2)))
    assert flat_outputs(torch.randn(3, 10), 8).shape == (3, 10)
    design = Design(metasurface_height=11e-3, metasurface_width=11e-3, kernel_taps=3, input_height=32, input_width=32)
    student = build_student("segmentation-meta", design, 1)
    images = torch.rand(4, 1, 32, 32)
    exact = ntk_exact(student, images, output_pool=4)
    estimate = ntk_estimate(student, images, draws=64, output_pool=4)
    assert exact.shape == estimate.shape == (4, 4)
    assert torch.allclose(exact, exact.T, rtol=1e-4) and (torch.linalg.eigvalsh(exact.double()) > -1e-6).all()
    assert kernel_distance(exact, estimate, "cka") < 0.5  # same kernel, up to the estimator's noise


def test_normalisations_remove_scale_and_cka_removes_offsets():
    torch.manual_seed(0)
    features = torch.randn(8, 5)
    kernel = features @ features.T
    for how in ("trace", "frobenius", "cka"):
        assert float(kernel_distance(kernel, 1e4 * kernel, how)) < 1e-10
        assert normalise_kernel(kernel, how).abs().max() < 20  # entries of order one
    assert float(kernel_distance(kernel, kernel + 3.0, "cka")) < 1e-10
    assert float(kernel_distance(kernel, kernel + 3.0, "trace")) > 1e-3
    other = torch.randn(8, 5)
    assert 0 < float(kernel_distance(kernel, other @ other.T, "cka")) <= 4


def test_the_estimator_sees_the_noiseless_mean_function():
    design = Design()
    noisy = build_student("compressed-meta", design, 10)
    noisy.frontend.sensor = SensorSettings(bit_depth=8)
    images = torch.rand(5, 1, 28, 28)
    generator = torch.Generator().manual_seed(3)
    with_noise = ntk_estimate(noisy, images, draws=4, generator=generator)
    noisy.frontend.sensor = None
    generator.manual_seed(3)
    without = ntk_estimate(noisy, images, draws=4, generator=generator)
    assert torch.allclose(with_noise, without)


@pytest.mark.parametrize(
    ("method", "engine", "unbiased"),
    [("kd", "estimator", False), ("ntkd", "estimator", False), ("ntkd", "estimator", True), ("ntkd", "exact", False),
     ("kd+ntkd", "estimator", False)],
)  # fmt: skip
def test_transfer_losses_train_the_student_only(method, engine, unbiased):
    torch.manual_seed(0)
    student = build_student("compressed-meta", Design(), 10)
    teacher = build_teacher("lenet", 1, (28, 28), 10)
    images, targets = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    config = TrainConfig(method=method, ntk_engine=engine, teacher_ntk="exact", ntk_draws=2, ntk_unbiased=unbiased)
    loss_fn = TransferLoss(config, "classification", teacher)
    outputs, parts = loss_fn(student, images, targets, torch.arange(6))
    parts.total.backward()
    assert outputs.shape == (6, 10)
    parts_of_method = set(method.split("+"))
    expected = (
        {"task"} | ({"kd"} if "kd" in parts_of_method else set()) | ({"ntk"} if "ntkd" in parts_of_method else set())
    )
    assert set(parts.components) == expected
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training


def test_the_student_kernel_can_cover_the_optics_or_the_backend_only():
    from onn_core.training.losses import student_parameters

    student = build_student("compressed-meta", Design(), 10)
    names = [name for name, _ in student.named_parameters()]
    optics = [n for n in names if student_parameters(student, "frontend")(n)]
    backend = [n for n in names if student_parameters(student, "backend")(n)]
    assert optics == ["frontend.weight"] and sorted(optics + backend) == sorted(names)
    assert student_parameters(student, "all") is None
    images = torch.rand(4, 1, 28, 28)
    whole = ntk_exact(student, images)
    parts = sum(ntk_exact(student, images, include=student_parameters(student, w)) for w in ("frontend", "backend"))
    assert torch.allclose(whole, parts, rtol=1e-4)  # the NTK is a sum over parameter groups


def test_hinton_kd_is_zero_for_identical_logits_and_positive_otherwise():
    logits = torch.randn(4, 10)
    assert abs(float(hinton_kd(logits, logits, 4.0, "classification"))) < 1e-6
    assert float(hinton_kd(logits, torch.randn(4, 10), 4.0, "classification")) > 0
    maps = torch.randn(2, 1, 8, 8)
    assert abs(float(hinton_kd(maps, maps, 2.0, "segmentation"))) < 1e-6
    assert float(hinton_kd(maps, -maps, 2.0, "segmentation")) > 0


@pytest.fixture(scope="module")
def quick_teacher(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    config = TrainConfig(dataset="mnist", role="teacher", model="lenet", epochs=2, train_limit=600, threads=2,
                         batch_size=64)  # fmt: skip
    train(config, folder)
    return folder


def test_a_two_epoch_ntkd_run_decreases_its_loss_and_logs_components(tmp_path, quick_teacher, monkeypatch):
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    config = TrainConfig(dataset="mnist", method="ntkd", teacher=str(quick_teacher), epochs=2, train_limit=600,
                         threads=2, batch_size=64, ntk_sketch=16)  # fmt: skip
    updates = []
    metrics = train(config, tmp_path / "run", design=Design(), progress=updates.append)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    # The teacher's sketch is a reported phase of its own (jobs show it), then training starts.
    prepare = [u for u in updates if u.phase == "prepare"]
    train_images = metrics["data"]["sizes"]["train"]
    assert prepare and prepare[-1].step == prepare[-1].steps == train_images and prepare[-1].fraction == 0.0
    assert updates.index(prepare[-1]) < next(i for i, u in enumerate(updates) if u.phase == "train")
    assert {"loss_task", "loss_ntk"} <= set(next(u for u in updates if u.phase == "train").metrics)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert history[1]["train_ntk"] < history[0]["train_ntk"]
    assert {"train_task", "train_ntk"} <= set(history[0])
    assert metrics["method"] == "ntkd" and metrics["teacher"]["run_dir"] == str(quick_teacher)
    assert metrics["accuracy"] > 0.5
    # The teacher's sketch is cached once and reused by the next run on the same data.
    cached = list((tmp_path / "home" / "cache" / "teacher-sketch").glob("*.pt"))
    assert len(cached) == 1
    train(config.replace(seed=1, epochs=1), tmp_path / "run2", design=Design())
    assert "teacher NTK sketch from" in (tmp_path / "run2" / "train.log").read_text()


def test_distillation_without_a_usable_teacher_says_what_to_do(tmp_path, quick_teacher, monkeypatch):
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    config = TrainConfig(dataset="mnist", method="kd", epochs=1, train_limit=200, threads=2)
    with pytest.raises(TrainingError, match="train-teacher --dataset mnist"):
        train(config, tmp_path / "a", design=Design())
    with pytest.raises(TrainingError, match="split_seed = 0 but this run uses 1"):
        train(config.replace(teacher=str(quick_teacher), split_seed=1), tmp_path / "b", design=Design())
    with pytest.raises(TrainingError, match="not a finished teacher run"):
        train(config.replace(teacher=str(tmp_path)), tmp_path / "c", design=Design())
    with pytest.raises(TrainingError, match="cannot be used with augment"):
        TrainConfig(method="ntkd", augment=True)
    with pytest.raises(TrainingError, match="method e2e"):
        TrainConfig(role="teacher", method="kd")


def test_the_cli_passes_every_transfer_option_to_the_config():
    from onn_core.cli import _training_config, build_parser

    args = build_parser().parse_args(
        ["train", "--dataset", "mnist", "--out", "x", "--method", "kd+ntkd", "--teacher", "runs/t", "--alpha", "0.7",
         "--beta", "0.3", "--temperature", "2", "--kd-alpha", "0.9", "--ntk-engine", "estimator", "--teacher-ntk",
         "estimator", "--ntk-draws", "4", "--ntk-epsilon", "1e-4", "--ntk-sketch", "32", "--ntk-normalisation",
         "trace", "--ntk-output-pool", "4", "--ntk-unbiased", "--ntk-parameters", "backend"]
    )  # fmt: skip
    config = _training_config(args, "student")
    assert (config.method, config.teacher, config.alpha, config.beta) == ("kd+ntkd", "runs/t", 0.7, 0.3)
    assert (config.temperature, config.kd_alpha, config.teacher_ntk, config.ntk_draws) == (2, 0.9, "estimator", 4)
    assert (config.ntk_epsilon, config.ntk_sketch, config.ntk_normalisation) == (1e-4, 32, "trace")
    assert config.ntk_output_pool == 4 and config.ntk_unbiased and config.ntk_parameters == "backend"
    # Defaults leave a run's identity as it was before knowledge transfer existed.
    import hashlib

    from onn_core.training.config import TRANSFER_DEFAULTS

    plain = TrainConfig(dataset="mnist")
    before = {k: v for k, v in plain.to_dict().items() if k != "threads" and k not in TRANSFER_DEFAULTS}
    before["design_id"] = None
    assert plain.run_id() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
    assert plain.run_id() != plain.replace(beta=2.0).run_id()


# ---------------------------------------------------------------------------- the structured engine
def _every_student() -> dict[str, tuple[nn.Module, torch.Tensor, int]]:
    """(model, images, output pool) for every student the zoo builds, and the compensation backend."""
    from onn_core.models import FrontendOptions
    from onn_core.models.zoo import BackendOnFeatures

    torch.manual_seed(0)
    small = Design(input_height=16, input_width=16)
    rgb = small.replace(input_channels=3, wavelengths=(635e-9, 532e-9, 450e-9), metasurface_height=8e-3,
                        metasurface_width=8e-3)  # fmt: skip
    segmentation = Design(metasurface_height=11e-3, metasurface_width=11e-3, kernel_taps=3, input_height=16,
                          input_width=16)  # fmt: skip
    compressed = build_student("compressed-meta", small, 10)
    return {
        "compressed-meta": (compressed, torch.rand(5, 1, 16, 16), 8),
        "compressed-meta non-negative": (
            build_student("compressed-meta", small.replace(signed_kernels=False), 10), torch.rand(5, 1, 16, 16), 8),
        "compressed-meta band-limited": (
            build_student("compressed-meta", small, 10, FrontendOptions(band_limit=True, normalise_intensity=True)),
            torch.rand(5, 1, 16, 16), 8),
        "polychromatic-meta": (build_student("polychromatic-meta", rgb, 10), torch.rand(4, 3, 16, 16), 8),
        "segmentation-meta": (build_student("segmentation-meta", segmentation, 1), torch.rand(3, 1, 16, 16), 4),
        "random-readout": (build_student("random-readout", small, 10), torch.rand(5, 1, 16, 16), 8),
        "backend on feature maps": (BackendOnFeatures(compressed), torch.randn(5, 8, 16, 16), 8),
    }  # fmt: skip


STUDENTS = _every_student()


def _trainable_groups() -> list[tuple[str, str]]:
    """(student, parameter group) pairs with something to train (random-readout's and the
    compensation backend's optics are fixed)."""
    from onn_core.training.losses import student_parameters

    pairs = []
    for student, (model, _, _) in sorted(STUDENTS.items()):
        for which in ("all", "frontend", "backend"):
            include = student_parameters(model, which)
            if any(include is None or include(n) for n, p in model.named_parameters() if p.requires_grad):
                pairs.append((student, which))
    return pairs


@pytest.mark.parametrize(("student", "which"), _trainable_groups())
def test_the_structured_ntk_is_the_exact_ntk_on_every_student(student, which):
    import copy

    from onn_core.training.losses import student_parameters
    from onn_core.training.ntk import ntk_structured

    model, images, pool = STUDENTS[student]
    include = student_parameters(model, which)
    wide = copy.deepcopy(model).double()
    reference = ntk_exact(wide, images.double(), include=include, output_pool=pool).detach()
    scale = reference.abs().max()
    assert scale > 0
    in_float64 = ntk_structured(wide, images.double(), include=include, output_pool=pool).detach()
    assert (in_float64 - reference).abs().max() <= 1e-9 * scale
    in_float32 = ntk_structured(model, images, include=include, output_pool=pool).detach()
    assert in_float32.dtype == torch.float32 and (in_float32.double() - reference).abs().max() <= 1e-4 * scale
    chunked = ntk_structured(wide, images.double(), include=include, output_pool=pool, output_chunk=3).detach()
    assert torch.allclose(chunked, in_float64, rtol=1e-12, atol=1e-12 * float(scale))


@pytest.mark.parametrize("student", ["compressed-meta", "compressed-meta non-negative", "segmentation-meta"])
def test_the_kernel_distance_gradient_through_the_structured_ntk_is_exact(student):
    import copy

    from onn_core.training.ntk import ntk_structured

    model, images, pool = STUDENTS[student]
    model, images = copy.deepcopy(model).double(), images.double()
    features = torch.randn(len(images), 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    teacher = features @ features.T
    gradients = []
    for engine in (ntk_exact, ntk_structured):
        model.zero_grad()
        kernel_distance(teacher, engine(model, images, output_pool=pool), "cka").backward()
        gradients.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                                    for p in model.parameters() if p.requires_grad]))  # fmt: skip
    reference, structured = gradients
    assert reference.norm() > 0
    assert (structured - reference).norm() <= 1e-8 * reference.norm()


def test_a_frozen_teachers_structured_ntk_is_its_exact_ntk_without_a_graph():
    from onn_core.training.ntk import ntk_structured

    teacher = build_teacher("lenet-wide", 1, (28, 28), 10).double().eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    images = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    reference = ntk_exact(teacher, images)
    with torch.no_grad():
        kernel = ntk_structured(teacher, images)
    assert not kernel.requires_grad
    assert (kernel - reference).abs().max() <= 1e-9 * reference.abs().max()


def test_the_frontends_kernel_jacobian_is_autograds():
    from onn_core.models import FrontendOptions

    for options in (FrontendOptions(), FrontendOptions(normalise_intensity=True)):
        frontend = build_student("compressed-meta", Design(input_height=12, input_width=12), 10, options).frontend
        frontend = frontend.double()
        images = torch.rand(3, 1, 12, 12, dtype=torch.float64)
        signals = torch.randn(2, 3, frontend.kernels, 12, 12, dtype=torch.float64)
        kernels = frontend.signed_kernels().detach()
        expected = []
        for signal in signals:
            rows = []
            for image, per_image in zip(images, signal, strict=True):
                copy = kernels.clone().requires_grad_(True)
                (frontend.noiseless_readout(image.unsqueeze(0), copy)[0] * per_image).sum().backward()
                rows.append(copy.grad)
            expected.append(torch.stack(rows))
        assert torch.allclose(frontend.kernel_jacobian(images, signals), torch.stack(expected), rtol=1e-12, atol=1e-12)


def test_the_structured_engine_refuses_what_it_cannot_take_naming_the_layer():
    from onn_core.models import FrontendOptions
    from onn_core.training.losses import student_parameters
    from onn_core.training.ntk import ntk_structured

    small = Design(metasurface_height=130e-6, metasurface_width=130e-6, kernel_size=60e-6, kernel_spacing=10e-6,
                   sensor_distance=150e-6, sensor_pixel_pitch=2e-6, sensor_pixels_per_tap=2, kernel_taps=5,
                   input_height=12, input_width=12)  # fmt: skip
    physical = build_student("compressed-meta", small, 10, FrontendOptions(kind="physical"))
    images = torch.rand(2, 1, 12, 12)
    with pytest.raises(TrainingError, match=r"'frontend' \(PhysicalFrontend\).*--ntk-parameters backend"):
        ntk_structured(physical, images)
    backend_only = student_parameters(physical, "backend")
    assert torch.allclose(ntk_structured(physical, images, include=backend_only),
                          ntk_exact(physical, images, include=backend_only), rtol=1e-4)  # fmt: skip

    class Scaled(nn.Module):  # a parameter of its own beside a child layer's: still exact
        def __init__(self) -> None:
            super().__init__()
            self.layer, self.gain = nn.Linear(4, 3), nn.Parameter(torch.tensor(1.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gain * torch.tanh(self.layer(x))

    scaled, inputs = Scaled().double(), torch.rand(3, 4, dtype=torch.float64)
    assert torch.allclose(ntk_structured(scaled, inputs), ntk_exact(scaled, inputs), rtol=1e-10)

    class Mixer(nn.Module):  # two inputs: its Jacobian cannot be read from one input
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.weight * x + y

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mix = Mixer()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mix(x, x)

    with pytest.raises(TrainingError, match="layer Mixer takes 2 positional"):
        ntk_structured(TwoInputs(), torch.rand(3, 4))
    shared = nn.Linear(4, 4)
    with pytest.raises(TrainingError, match=r"layer '0' \(Linear\) was applied 2 times"):
        ntk_structured(nn.Sequential(shared, nn.Tanh(), shared), torch.rand(3, 4))


def test_kernel_batch_and_engine_settings_and_run_identity():
    from onn_core.cli import build_parser

    assert TrainConfig().ntk_engine == "structured" and TrainConfig().ntk_batch == 32
    with pytest.raises(TrainingError, match="ntk_batch must be a whole number from 2"):
        TrainConfig(ntk_batch=1)
    parser = build_parser()
    args = parser.parse_args(["train", "--dataset", "mnist", "--out", "x", "--method", "ntkd", "--ntk-batch", "all"])
    assert args.ntk_batch is None and args.ntk_engine == "structured"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--dataset", "mnist", "--out", "x", "--ntk-batch", "some"])
    ntkd = TrainConfig(method="ntkd")
    # A structured-engine run is not the old estimator's run; kernel settings do not touch e2e runs.
    assert ntkd.run_id() != ntkd.replace(ntk_engine="estimator", ntk_batch=None).run_id()
    assert TrainConfig().run_id() == TrainConfig(ntk_engine="exact", ntk_batch=8, ntk_draws=4).run_id()


def test_the_loss_takes_the_kernels_on_the_first_ntk_batch_images():
    student = build_student("compressed-meta", Design(input_height=16, input_width=16), 10)
    teacher = build_teacher("lenet", 1, (16, 16), 10)
    images, targets = torch.rand(6, 1, 16, 16), torch.randint(0, 10, (6,))
    seen = []
    loss = TransferLoss(TrainConfig(method="ntkd", teacher_ntk="exact", ntk_batch=4), "classification", teacher)
    original = loss.student_kernel

    def spy(model, kept, outputs):
        seen.append(len(kept))
        return original(model, kept, outputs)

    loss.student_kernel = spy
    outputs, parts = loss(student, images, targets, torch.arange(6))
    assert seen == [4] and outputs.shape == (6, 10) and "ntk" in parts.components


# ---------------------------------------------------------------------------- following the evidence
MEASURED = {
    "measured": {
        "digits": {
            "non-negative": {"seeds": 5, "gain_over_e2e_points": {"kd": 1.7, "ntkd": 1.1, "kd+ntkd": 0.4},
                             "best": "kd", "ntkd_verdict": "helps, below KD",
                             "chosen": {"temperature": 2.0, "kd_alpha": 0.9}},
            "signed": {"seeds": 5, "gain_over_e2e_points": {"kd": -0.3, "ntkd": -0.6}, "best": "e2e", "chosen": {}},
        }
    }
}  # fmt: skip


def test_the_measured_ordering_is_phrased_for_a_designer_and_picks_the_method():
    from onn_core.training.evidence import choose_method, design_regime, measured

    assert design_regime(Design()) == "signed"
    assert design_regime(Design(signed_kernels=False)) == "non-negative"
    assert design_regime(Design(signed_kernels=False), sensor_noise=True) == "non-negative-noisy"
    assert design_regime(Design(), frontend="physical") == "physical"
    evidence = measured("digits", "non-negative", MEASURED)
    expected = "measured on digits, non-negative kernels, 5 seeds: KD +1.7, NTKD +1.1, KD+NTKD +0.4 over e2e"
    assert evidence.line() == expected
    method, settings, why = choose_method("digits", "non-negative", MEASURED)
    assert (method, settings) == ("kd", {"temperature": 2.0, "kd_alpha": 0.9})
    assert why.startswith("measured on digits") and "KD is best (with temperature 2.0, kd_alpha 0.9)" in why
    assert choose_method("digits", "signed", MEASURED)[0] == "e2e"
    method, settings, why = choose_method("mnist", "signed", MEASURED)
    assert (method, settings) == ("e2e", {}) and why.startswith("no measurements for mnist with signed kernels")
    assert "digits/non-negative" in why
    assert choose_method("mnist", "signed", {})[2].count("measured: nothing yet") == 1
    # When a teacher trained one epoch on 64 images gains as much, the line says the gain is not the teacher's.
    from onn_core.training.evidence import NOT_THE_TEACHERS

    regulariser = {"measured": {"digits": {"physical": {
        "seeds": 5, "gain_over_e2e_points": {"kd": -0.4, "ntkd": 0.3}, "best": "ntkd", "control": NOT_THE_TEACHERS,
        "chosen": {"beta": 0.3}}}}}  # fmt: skip
    method, _, why = choose_method("digits", "physical", regulariser)
    assert method == "ntkd" and "gains as much: not the teacher's knowledge" in why
    assert "not the teacher's" not in measured("digits", "non-negative", MEASURED).line()


def test_train_method_auto_follows_the_measurements_and_says_why(tmp_path, monkeypatch, capsys):
    from onn_core import cli
    from onn_core.training import evidence

    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(MEASURED))
    monkeypatch.setattr(evidence, "SUMMARY", summary)
    design = tmp_path / "design.json"
    design.write_text(Design(signed_kernels=False, metasurface_height=2e-3, metasurface_width=4e-3).to_json())
    args = cli.build_parser().parse_args(["train", "--dataset", "digits", "--design", str(design), "--out", "x",
                                          "--method", "auto", "--kd-alpha", "0.7"])  # fmt: skip
    choice = cli._choose_method(args, Design.from_json(design.read_text()))
    assert args.method == "kd" and args.temperature == 2.0 and args.kd_alpha == 0.7  # what the user set stays
    assert choice["settings"] == {"temperature": 2.0} and choice["regime"] == "non-negative"
    assert "--method auto chose kd: measured on digits, non-negative kernels" in capsys.readouterr().out
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    code = cli.main(["train", "--dataset", "digits", "--out", str(tmp_path / "run"), "--method", "auto", "--epochs",
                     "1", "--train-limit", "200", "--threads", "2", "--quiet"])  # fmt: skip
    output = capsys.readouterr().out
    assert code == 0 and "--method auto chose e2e: measured on digits, signed kernels, 5 seeds: KD -0.3" in output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["method"] == "e2e"


def test_a_physical_student_simulates_its_psfs_once_per_step_with_the_same_gradients():
    from onn_core.models import FrontendOptions
    from onn_core.models.frontends import held_kernels

    small = Design(metasurface_height=130e-6, metasurface_width=130e-6, kernel_size=60e-6, kernel_spacing=10e-6,
                   sensor_distance=150e-6, sensor_pixel_pitch=2e-6, sensor_pixels_per_tap=2, kernel_taps=5,
                   input_height=12, input_width=12)  # fmt: skip
    torch.manual_seed(0)
    student = build_student("compressed-meta", small, 10, FrontendOptions(kind="physical"))
    frontend = student.frontend
    with held_kernels(student):
        first = frontend.capture_kernels()
        assert frontend.capture_kernels() is first  # reused while the radius maps are unchanged
        with torch.no_grad():
            assert frontend.capture_kernels() is not first  # another grad mode: its own copy
        with torch.no_grad():
            frontend.radius_logit.add_(0.0)  # an in-place update (as an optimiser step) invalidates
        assert frontend.capture_kernels() is not first
    assert frontend.capture_kernels() is not frontend.capture_kernels()  # outside the block nothing is kept

    teacher = build_teacher("lenet", 1, (12, 12), 10)
    images, targets = torch.rand(6, 1, 12, 12), torch.randint(0, 10, (6,))
    config = TrainConfig(method="ntkd", teacher_ntk="structured", ntk_parameters="backend", beta=3.0)
    _, parts = TransferLoss(config, "classification", teacher)(student, images, targets, torch.arange(6))
    held = torch.autograd.grad(parts.total, [frontend.radius_logit, student.backend[0].weight])
    # The same loss with every forward simulating its own PSFs.
    from onn_core.training.losses import student_parameters
    from onn_core.training.metrics import task_loss
    from onn_core.training.ntk import ntk_structured

    with torch.no_grad():
        teacher_kernel = ntk_structured(teacher, images)
    student_kernel = ntk_structured(student, images, include=student_parameters(student, "backend"))
    total = task_loss("classification", student(images), targets) + 3.0 * kernel_distance(teacher_kernel,
                                                                                            student_kernel)  # fmt: skip
    fresh = torch.autograd.grad(total, [frontend.radius_logit, student.backend[0].weight])
    for a, b in zip(held, fresh, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))


def test_kd_reads_teacher_outputs_computed_once_and_only_for_the_raw_training_images(monkeypatch):
    from onn_core.training import trainer

    torch.manual_seed(0)
    student = build_student("compressed-meta", Design(), 10)
    teacher = build_teacher("lenet", 1, (28, 28), 10).eval()
    train_images, targets = torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,))
    known = trainer.teacher_outputs_once(teacher, train_images, batch_size=7)  # batches that do not divide 20
    with torch.no_grad():
        assert torch.allclose(known, teacher(train_images), atol=1e-5)
    config = TrainConfig(method="kd", temperature=4.0)
    index = torch.tensor([3, 17, 0, 9])
    live = TransferLoss(config, "classification", teacher)(student, train_images[index], targets[index], index)[1]
    cached = TransferLoss(config, "classification", teacher, teacher_outputs=known)
    read = cached(student, train_images[index], targets[index], index)[1]
    assert read.components["kd"] == pytest.approx(live.components["kd"], rel=1e-5)
    # Other teacher inputs (compensation's captured maps) are never answered from the cache.
    other = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        expected = hinton_kd(student(train_images[index]), teacher(other), 4.0, "classification")
    passed = cached(student, train_images[index], targets[index], index, teacher_images=other)[1]
    assert passed.components["kd"] == pytest.approx(float(expected), rel=1e-5)
    # Too large to keep: the teacher runs per minibatch instead.
    monkeypatch.setattr(trainer, "TEACHER_OUTPUTS_MAX_BYTES", 100)
    assert trainer.teacher_outputs_once(teacher, train_images) is None


def test_the_teacher_kernel_table_is_the_exact_kernel_of_every_pair_built_in_blocks():
    from onn_core.training.ntk import TeacherKernelTable

    model = tiny_model()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    images = torch.rand(11, 1, 8, 8, dtype=torch.float64)
    row_elements = 4 * sum(p.numel() for p in model.parameters())
    reports = []
    # Blocks of 3 images and groups of 2: neither divides 11.
    table = TeacherKernelTable(model, images, max_elements=3 * row_elements, group=2,
                               progress=lambda done, total: reports.append((done, total)))  # fmt: skip
    assert TeacherKernelTable.block_size(11, row_elements, 3 * row_elements) == 3
    assert reports[-1] == (TeacherKernelTable.cost(11, 3), TeacherKernelTable.cost(11, 3)) == (11 + 8 + 5 + 2,) * 2
    with torch.no_grad():
        exact = ntk_exact(model, images)
    assert torch.allclose(table.table, exact, rtol=1e-10, atol=1e-12)
    index = torch.tensor([7, 2, 10, 2])
    assert torch.allclose(table.kernel(index), exact[index][:, index], rtol=1e-10)


def test_an_exact_teacher_kernel_is_tabulated_once_when_that_is_cheaper(tmp_path, quick_teacher, monkeypatch):
    from onn_core.training import trainer

    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    config = TrainConfig(dataset="mnist", method="ntkd", teacher=str(quick_teacher), teacher_ntk="exact", epochs=2,
                         train_limit=120, threads=2, batch_size=32, ntk_batch=32, beta=1.0)  # fmt: skip
    updates = []
    train(config, tmp_path / "table", design=Design(), progress=updates.append)
    assert "teacher's exact kernel table (120 images)" in (tmp_path / "table" / "train.log").read_text()
    assert any(u.phase == "prepare" and u.metrics.get("task") == "teacher kernel table" for u in updates)
    assert len(list((tmp_path / "home" / "cache" / "teacher-kernel").glob("*.pt"))) == 1
    # The same run computing the teacher's kernel per minibatch trains the same way.
    monkeypatch.setattr(trainer, "TEACHER_TABLE_MAX_IMAGES", 0)
    train(config, tmp_path / "per-batch", design=Design())
    tabulated, per_batch = (json.loads((tmp_path / run / "history.json").read_text()) for run in ("table", "per-batch"))
    for a, b in zip(tabulated, per_batch, strict=True):
        assert a["train_ntk"] == pytest.approx(b["train_ntk"], rel=1e-3)
    monkeypatch.undo()
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path / "home"))
    train(config.replace(seed=1), tmp_path / "again", design=Design())
    assert "teacher's exact kernel table from" in (tmp_path / "again" / "train.log").read_text()
    # A short run whose minibatch kernels cost less than the table computes them per batch.
    train(config.replace(epochs=1, ntk_batch=4), tmp_path / "short", design=Design())
    assert "kernel table" not in (tmp_path / "short" / "train.log").read_text()
