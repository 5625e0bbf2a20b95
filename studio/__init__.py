"""The studio's app layer: what the Streamlit pages share (form parsing, previews, figures, widgets,
the server launcher). Pages import it; the library below (``onn_core``, ``estimators``) never does."""
