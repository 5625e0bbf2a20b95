"""Runs app.py for AppTest.

AppTest resets Streamlit's "uses a pages/ directory" flag before every run, so an entry script
with a pages/ folder beside it is rerun in the legacy multipage mode, which executes the page
alone (no sidebar). A real server clears that flag for good once st.navigation is called. This
entry has no pages/ beside it, so every AppTest run executes app.py as the server does.
"""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"), run_name="__main__")
