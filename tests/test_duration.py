"""A job's duration, said before it starts, from the earlier jobs like it (onn_core.training.duration)."""

import statistics
from types import SimpleNamespace

import pytest

from onn_core.training.duration import expected_duration
from onn_core.units import format_duration


def finished(kind="train", seconds=100.0, epochs=10, images=1000, **config):
    config = {"dataset": "mnist", "method": "e2e", "design": {"a": 1}, **config}
    metrics = {"train_seconds": seconds, "epochs_run": epochs, "data": {"sizes": {"train": images}}}
    return SimpleNamespace(kind=kind, state="succeeded", config=config, metrics=metrics)


def test_the_estimate_scales_the_rate_of_the_jobs_most_like_this_one():
    history = [finished(seconds=100, images=1000),  # 10 ms per image·epoch, this design on this data
               finished(seconds=400, images=1000, design={"b": 2}),  # another design: not used while one matches
               finished(seconds=1000, images=500, dataset="fashion-mnist")]  # fmt: skip
    estimate = expected_duration("train", {"dataset": "mnist", "method": "e2e", "epochs": 30, "design": {"a": 1}},
                                 history)  # fmt: skip
    assert estimate.seconds == pytest.approx(0.01 * 1000 * 30) and estimate.jobs == 1
    assert "this design on this data" in estimate.text() and "5 min" in estimate.text()
    # A limit caps the images; another design on this data falls back to the data's jobs (median rate).
    limited = expected_duration("train", {"dataset": "mnist", "method": "e2e", "epochs": 10, "train_limit": 300,
                                          "design": {"c": 3}}, history)  # fmt: skip
    assert limited.seconds == pytest.approx(statistics.median([0.01, 0.04]) * 300 * 10)
    assert "2 earlier e2e train jobs here, this data" in limited.basis


def test_no_comparable_job_means_no_estimate_rather_than_a_guess():
    history = [finished(method="kd"), finished(kind="teacher"), finished(frontend="physical")]
    assert expected_duration("train", {"dataset": "mnist", "method": "e2e", "epochs": 5}, history) is None
    # New data with no limit: how many images it has is not known from any earlier job.
    assert expected_duration("train", {"dataset": "digits", "method": "e2e", "epochs": 5}, [finished()]) is None
    broken = finished()
    broken.metrics = {"train_seconds": 5.0}  # a job that recorded no sizes is no basis
    assert expected_duration("train", {"dataset": "mnist", "method": "e2e", "epochs": 5}, [broken]) is None


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "1 s"), (42, "42 s"), (95, "2 min"), (3600, "1 h"),
                                               (4800, "1 h 20 min")])  # fmt: skip
def test_durations_read_as_a_designer_says_them(seconds, text):
    assert format_duration(seconds) == text
