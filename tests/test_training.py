"""Trainer: learns, resumes exactly, refuses to go on after NaN, and the CLI prints JSON metrics."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from onn_core.data import load_dataset
from onn_core.design import Design
from onn_core.errors import DesignError, TrainingError
from onn_core.training import TrainConfig, find_teacher, train

ROOT = Path(__file__).resolve().parents[1]
QUICK = TrainConfig(dataset="mnist", epochs=2, train_limit=600, threads=2, batch_size=64)


class Interrupt(Exception):
    pass


def test_student_learns_and_writes_the_run_folder(tmp_path):
    metrics = train(QUICK, tmp_path, design=Design())
    assert 0.6 < metrics["accuracy"] <= 1.0
    assert len(metrics["per_class_accuracy"]) == 10
    assert np.array(metrics["confusion_matrix"]).sum() == 1000
    for name in ("config.json", "design.json", "history.json", "metrics.json", "model.pt", "kernels.npz", "train.log"):
        assert (tmp_path / name).is_file(), name
    kernels = np.load(tmp_path / "kernels.npz")
    assert kernels["signed_kernels"].shape == (8, 1, 7, 7)
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 2


@pytest.mark.parametrize("sensor_noise", [False, True], ids=["ideal", "sensor-noise"])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, sensor_noise):
    config = QUICK.replace(epochs=3, sensor_noise=sensor_noise)
    straight = train(config, tmp_path / "straight", design=Design())

    def stop_after_first_epoch(progress):
        if progress.phase == "validate" and progress.epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, tmp_path / "resumed", design=Design(), progress=stop_after_first_epoch)
    resumed = train(config, tmp_path / "resumed", design=Design())
    assert "resumed at epoch 1" in (tmp_path / "resumed" / "train.log").read_text()
    assert resumed["epochs_run"] == 3
    assert resumed["accuracy"] == straight["accuracy"]


def test_a_checkpoint_of_another_design_or_a_torn_file_is_not_resumed(tmp_path):
    config = QUICK.replace(epochs=1)
    train(config, tmp_path, design=Design())
    train(config, tmp_path, design=Design(sensor_distance=2.5e-3))
    assert "another configuration or design; starting afresh" in (tmp_path / "train.log").read_text()
    (tmp_path / "checkpoint.pt").write_bytes(b"torn")
    with pytest.raises(TrainingError, match=r"checkpoint.pt is not a readable checkpoint.*delete it"):
        train(config, tmp_path, design=Design())


def test_segmentation_with_augment_is_refused_up_front():
    with pytest.raises(TrainingError, match=r"cannot be used with shapes-seg.*drop --augment"):
        TrainConfig(dataset="shapes-seg", augment=True)


def test_seeds_are_deterministic(tmp_path):
    first = train(QUICK.replace(epochs=1), tmp_path / "a", design=Design())
    second = train(QUICK.replace(epochs=1), tmp_path / "b", design=Design())
    assert first["confusion_matrix"] == second["confusion_matrix"]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_log(tmp_path):
    data = load_dataset("mnist", train_limit=256)
    data.train.images[5] = float("nan")
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 1.*Lower the learning rate"):
        train(QUICK, tmp_path, design=Design(), data=data)
    assert "loss became nan" in (tmp_path / "train.log").read_text()


def test_a_design_in_other_colours_reads_the_images_converted_and_given_data_must_match(tmp_path):
    rgb = Design(input_channels=3, wavelengths=(450e-9, 532e-9, 635e-9))
    metrics = train(QUICK, tmp_path / "rgb", design=rgb)
    assert metrics["data"]["image_shape"] == [3, 28, 28] and "converted from grey to RGB" in metrics["data"]["notes"]
    grey = load_dataset("mnist", train_limit=64)
    with pytest.raises(DesignError, match=r"input_channels.*load_for_design"):
        train(QUICK, tmp_path / "given", design=rgb, data=grey)


def test_bad_config_is_refused():
    with pytest.raises(TrainingError, match=r"optimiser must be one of"):
        TrainConfig(optimiser="lbfgs")
    with pytest.raises(TrainingError, match=r"unknown training setting"):
        TrainConfig.from_dict({"epochz": 3})


def test_segmentation_teacher_reports_miou_and_dice(tmp_path):
    data = load_dataset("shapes-seg", image_size=(32, 32), generated_counts=(48, 16, 16))
    config = TrainConfig(dataset="shapes-seg", role="teacher", epochs=1, batch_size=16, threads=2)
    metrics = train(config, tmp_path, data=data)
    assert metrics["model"] == "unet"
    assert 0 <= metrics["miou"] <= 1 and 0 <= metrics["dice"] <= 1


def test_cli_train_prints_final_metrics_as_json(tmp_path):
    command = [
        sys.executable, "-m", "onn_core", "train", "--dataset", "digits", "--method", "e2e", "--epochs", "1",
        "--seed", "3", "--out", str(tmp_path / "run"), "--train-limit", "300", "--threads", "2", "--json",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert 0 <= metrics["accuracy"] <= 1 and metrics["seed"] == 3 and metrics["data"]["name"] == "digits"
    assert (tmp_path / "run" / "kernels.npz").is_file()


def test_cli_reports_a_missing_dataset_with_exit_code_2(tmp_path):
    command = [sys.executable, "-m", "onn_core", "train", "--dataset", "cifar10", "--data-root", str(tmp_path),
               "--out", str(tmp_path / "run"), "--json"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert "cifar10 is not available" in json.loads(result.stdout)["error"]


def test_train_teacher_lands_in_the_store_and_is_found(tmp_path, monkeypatch):
    command = [sys.executable, "-m", "onn_core", "train-teacher", "--dataset", "digits", "--epochs", "1",
               "--train-limit", "300", "--threads", "2", "--json"]  # fmt: skip
    environment = {**os.environ, "ONN_STUDIO_HOME": str(tmp_path)}
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=240, env=environment)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["model"] == "lenet-wide" and metrics["role"] == "teacher"  # the default teacher (zoo)
    assert Path(metrics["run_dir"]) == tmp_path / "teachers" / "digits" / "lenet-wide-split0-seed0"
    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path))
    found = find_teacher("digits", "lenet-wide")
    assert found is not None and found[1]["accuracy"] == metrics["accuracy"]


def test_rgb_student_and_alexnet_teacher_train_on_cifar_files(tmp_path):
    from tests.test_data import write_cifar

    write_cifar(tmp_path / "cifar-10-batches-py", per_batch=24)
    rgb = Design(wavelengths=(450e-9, 532e-9, 635e-9), input_channels=3, input_height=32, input_width=32)
    config = TrainConfig(dataset="cifar10", data_root=str(tmp_path), model="polychromatic-meta", epochs=1,
                         batch_size=32, threads=2)  # fmt: skip
    student = train(config, tmp_path / "student", design=rgb)
    assert student["data"]["image_shape"] == [3, 32, 32] and 0 <= student["accuracy"] <= 1
    teacher = train(config.replace(role="teacher", model="alexnet"), tmp_path / "teacher")
    assert teacher["model"] == "alexnet" and teacher["cost"]["optical_macs"] == 0


def _strict_json(path: Path):
    """Parse as RFC 8259 JSON: the bare NaN / Infinity Python's json writes are refused."""

    def refuse(word: str):
        raise AssertionError(f"{path.name} is not strict JSON: it holds {word}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.mark.parametrize(
    ("batch_size", "good_epochs"),
    [
        (64, 0),  # several steps an epoch: NaN within the first epoch, before any checkpoint
        (1000, 1),  # one step an epoch: epoch 1 ends finite; epoch 2's validation loss is NaN
    ],
    ids=["diverges-in-epoch-1", "diverges-after-epoch-1"],
)
def test_a_diverging_run_keeps_only_a_good_checkpoint_and_says_truthfully_whether_there_is_one(
    tmp_path, batch_size, good_epochs
):
    config = TrainConfig(dataset="digits", epochs=3, train_limit=200, threads=2, batch_size=batch_size,
                         learning_rate=1e9)  # fmt: skip
    with pytest.raises(TrainingError, match="Lower the learning rate") as diverged:
        train(config, tmp_path, design=Design())
    message = str(diverged.value)
    checkpoint = tmp_path / "checkpoint.pt"
    if good_epochs == 0:
        assert "no good checkpoint exists" in message and "is kept" not in message
        assert not checkpoint.exists()
        return
    assert f"the last good checkpoint (epoch {good_epochs}, finite weights and loss) is kept in {checkpoint}" in message
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == good_epochs
    assert all(torch.isfinite(tensor).all() for tensor in state["model"].values() if tensor.is_floating_point())
    history = _strict_json(tmp_path / "history.json")
    assert [row["epoch"] for row in history] == [1]
    assert all(math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]) for row in history)
    _strict_json(tmp_path / "config.json")


@pytest.mark.parametrize(
    ("setting", "value", "allowed"),
    [
        ("phase_pixel", float("inf"), r"phase_pixel must be a finite number in \(0, 0.001\] metres or null; got inf"),
        ("phase_pixel", 1e308, r"phase_pixel .*; got 1e\+308"),
        ("phase_pixel", 0, r"phase_pixel must be a finite number in \(0, 0.001\]"),
        ("data_root", 5, r"data_root must be a path \(text\) or null; got 5"),
        ("teacher", "  ", r"teacher must be a path \(text\) or null"),
        ("model", None, r"model must be text; got None"),
        ("learning_rate", float("nan"), r"learning_rate must be a finite number in \(0, ∞\); got nan"),
        ("learning_rate", 0, r"learning_rate must be a finite number in \(0, ∞\); got 0"),
        ("weight_decay", -1e-4, r"weight_decay must be a finite number in \[0, ∞\)"),
        ("temperature", float("inf"), r"temperature must be a finite number in \(0, ∞\)"),
        ("ntk_epsilon", "small", r"ntk_epsilon must be a finite number"),
        ("kd_alpha", 2, r"kd_alpha must be a finite number in \[0, 1\]; got 2"),
        ("val_fraction", 0.0, r"val_fraction must be a finite number in \(0, 1\)"),
        ("epochs", 10**6, r"epochs must be a whole number from 1 to 100000; got 1000000"),
        ("epochs", 2.0, r"epochs must be a whole number"),
        ("batch_size", True, r"batch_size must be a whole number from 1 to 1000000; got True"),
        ("seed", -1, r"seed must be a whole number from 0 to 4294967295; got -1"),
        ("split_seed", 2**40, r"split_seed must be a whole number from 0 to 4294967295"),
        ("train_limit", 0, r"train_limit must be a whole number from 1 to 1000000000 or null; got 0"),
        ("ntk_batch", 1, r"ntk_batch must be a whole number from 2 to 1000000 or null; got 1"),
        ("sensor_noise", 1, r"sensor_noise must be true or false; got 1"),
        ("method", ["kd"], r"method must be one of e2e, kd, ntkd, kd\+ntkd; got \['kd'\]"),
    ],
)
def test_every_setting_is_checked_for_type_finiteness_and_range(setting, value, allowed):
    with pytest.raises(TrainingError, match=allowed):
        TrainConfig.from_dict({"dataset": "mnist", setting: value})


def test_a_missing_dataset_or_teacher_is_said_before_any_work(tmp_path):
    with pytest.raises(TrainingError, match=r"cifar10 is not available"):
        TrainConfig(dataset="cifar10", data_root=str(tmp_path / "nowhere")).check_sources()
    with pytest.raises(TrainingError, match=r"is not a finished teacher run folder \(it lacks config.json"):
        TrainConfig(dataset="digits", method="kd", teacher=str(tmp_path)).check_sources()
    TrainConfig(dataset="digits").check_sources()


def test_a_physical_student_gets_the_fused_adamw_with_the_reference_numbers():
    """Its ~10⁷ radius logits are updated in one fused pass; the values are AdamW's all the same."""
    from onn_core.models import FrontendOptions, build_student
    from onn_core.training.trainer import build_optimiser

    small = Design(metasurface_height=130e-6, metasurface_width=130e-6, kernel_size=60e-6, kernel_spacing=10e-6,
                   sensor_distance=150e-6, sensor_pixel_pitch=2e-6, sensor_pixels_per_tap=2, kernel_taps=5,
                   input_height=12, input_width=12)  # fmt: skip
    config = TrainConfig(learning_rate=1e-2, weight_decay=1e-3)
    ideal = build_student("compressed-meta", small, 10, FrontendOptions(kind="ideal"))
    assert not build_optimiser(ideal, config).defaults["fused"]
    torch.manual_seed(0)
    physical = build_student("compressed-meta", small, 10, FrontendOptions(kind="physical"))
    reference = [p.detach().clone().requires_grad_() for p in physical.parameters()]
    fused = build_optimiser(physical, config)
    assert fused.defaults["fused"]
    plain = torch.optim.AdamW(reference, lr=1e-2, weight_decay=1e-3)
    for _ in range(3):
        for parameter, twin in zip(physical.parameters(), reference, strict=True):
            gradient = torch.randn_like(parameter)
            parameter.grad, twin.grad = gradient, gradient.clone()
        fused.step()
        plain.step()
    for parameter, twin in zip(physical.parameters(), reference, strict=True):
        torch.testing.assert_close(parameter.detach(), twin.detach(), rtol=1e-5, atol=1e-6)

    # A checkpoint written by the reference optimiser (before this change) resumes fused, with its moments.
    from onn_core.training.loop import RunState

    scheduler = torch.optim.lr_scheduler.LambdaLR(plain, lambda epoch: 1.0)
    checkpoint = RunState("run").to_checkpoint(physical, plain, scheduler)
    resumed = build_optimiser(physical, config)
    RunState.from_checkpoint(checkpoint, physical, resumed, torch.optim.lr_scheduler.LambdaLR(resumed, lambda e: 1.0))
    assert resumed.param_groups[0]["fused"]
    moments = [resumed.state[p]["exp_avg"] for p in physical.parameters()]
    torch.testing.assert_close(moments, [plain.state[p]["exp_avg"] for p in reference])
    for parameter in physical.parameters():
        parameter.grad = torch.randn_like(parameter)
    resumed.step()
    assert all(torch.isfinite(p).all() for p in physical.parameters())
