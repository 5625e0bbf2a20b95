"""The floor for bench/app_latency.py: the studio's shell (wide layout, navigation) and one Plotly chart.

Nothing of the studio is imported; what it takes to render is Streamlit's and Plotly's own cost.
"""

import plotly.graph_objects as go
import streamlit as st

st.set_page_config(page_title="Baseline", layout="wide")


def baseline_page() -> None:
    st.title("Baseline")
    st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2], y=[0, 1, 4])), width="stretch")


st.navigation([st.Page(baseline_page, title="Baseline", default=True)]).run()
