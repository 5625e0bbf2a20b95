"""Inspect page: a finished run's kernels, PSFs, feature maps, predictions, metrics; compare two runs."""


import pandas as pd
import streamlit as st

from onn_core.data import SPECS
from onn_core.errors import TrainingError
from onn_core.training.catalog import finished_runs
from onn_core.training.run import load_history
from studio.inspect import compare_runs, inspect_image, run_kernels
from studio.run_plots import (
    confusion_figure,
    feature_maps_figure,
    history_figure,
    kernels_figure,
    overlay_figure,
    realised_psfs_figure,
)
from studio.widgets import chosen_run, open_run, through_the_router

through_the_router(__file__)
st.title("Inspect a run")
entry, run = chosen_run()

metrics, metric = run.metrics, run.score_name
teacher = metrics.get("teacher") or {}
cost = metrics.get("cost") or {}
columns = st.columns(5)
columns[0].metric(f"Test {metric}", f"{100 * metrics[metric]:.1f} %")
if teacher.get(metric) is not None:
    columns[1].metric(f"Teacher ({teacher.get('model')})", f"{100 * teacher[metric]:.1f} %",
                      delta=f"{100 * (metrics[metric] - teacher[metric]):+.1f} points", delta_color="off")  # fmt: skip
else:
    columns[1].metric("Teacher", "none (e2e)")
columns[2].metric("Kernels", run.design.kernel_count)
columns[3].metric("Parameters", f"{cost.get('parameters', 0):,}")
columns[4].metric("Digital MACs / image", f"{cost.get('digital_macs', 0):,}")
st.caption(f"{metrics.get('model')} trained with {run.config.method} on {metrics.get('dataset')} "
           f"({metrics['data']['sizes']['train']} training images, {metrics.get('epochs_run')} epochs, seed "
           f"{run.config.seed}); optical MACs per image, done by light: {cost.get('optical_macs', 0):,}.")  # fmt: skip

kernels = run_kernels(run)
st.plotly_chart(kernels_figure(kernels.signed, kernels.tap_pitch), width="stretch")
if kernels.plus is not None:
    st.subheader("Realised by the metasurface")
    st.caption("Each signed kernel is two captures through its own sub-optic, subtracted digitally. Below: "
               "the simulated K⁺ and K⁻ PSFs of the inverse-designed radius maps; g⁺K⁺ − g⁻K⁻ correlates with the "
               f"trained kernel at {min(kernels.correlation):.4f} or better.")  # fmt: skip
    st.plotly_chart(realised_psfs_figure(kernels.plus, kernels.minus, kernels.tap_pitch), width="stretch")
else:
    st.info("No metasurface for this run yet: inverse-design it on the Fabricate page to see its PSFs.")

st.subheader("Through the optics")
test_size = metrics["data"]["sizes"]["test"]
index = st.number_input("Test image", min_value=0, max_value=test_size - 1, value=0, step=1, key="inspect.image")
seen = inspect_image(run, int(index))
st.plotly_chart(feature_maps_figure(seen["image"], seen["maps"], kernels.tap_pitch), width="stretch")
if run.task == "classification":
    classes = list(metrics.get("classes") or SPECS[run.config.dataset].classes)  # the names it was trained with
    verdict = "correct" if seen["predicted"] == seen["truth"] else "wrong"
    st.write(f"Predicted **{classes[seen['predicted']]}** ({100 * seen['probabilities'].max():.1f} %), true "
             f"**{classes[seen['truth']]}**: {verdict}.")  # fmt: skip
    st.bar_chart(pd.DataFrame({"probability": seen["probabilities"]}, index=classes), height=200)
    if metrics.get("confusion_matrix"):
        st.plotly_chart(confusion_figure(metrics["confusion_matrix"], classes), width="stretch")
    if metrics.get("per_class_accuracy"):
        st.caption("Test accuracy per class (%)")
        per_class = [100 * float(value) for value in metrics["per_class_accuracy"]]
        st.bar_chart(pd.DataFrame({"test accuracy (%)": per_class}, index=classes), height=220)
else:
    st.plotly_chart(overlay_figure(seen["image"], seen["truth_mask"], seen["predicted_mask"], kernels.tap_pitch),
                    width="stretch")  # fmt: skip

try:
    history = load_history(run.folder)
except TrainingError as reason:
    history = []
    st.warning(f"No training curve: {reason}")
if history:
    st.plotly_chart(history_figure(history, metric), width="stretch")

st.subheader("Compare with another run")
others = [other for other in finished_runs() if other.run_id != entry.run_id]
if not others:
    st.caption("Train another run to compare it with this one.")
else:
    other = st.selectbox("Other run", others, format_func=lambda e: e.label, key="inspect.other")
    second = open_run(other)
    if second is not None:
        # Runs become columns, so a column mixes text and numbers: shown as text, as read.
        table = pd.DataFrame(compare_runs([run, second])).set_index("run").T
        st.dataframe(table.map(lambda value: "–" if value is None else str(value)), width="stretch")
