"""ttt-omni results dashboard: runs, ppl vs length, generation quality, ASR-WER drift, human eval, the TTT monitor
of training runs, the curriculum gate, the leaderboards, hyperparameter sweeps and retrieval heatmaps.

It reads the results store ($EVALSUITE_DB or results/evalsuite.db; `evalsuite dashboard --db URL` sets it) and
computes no metric itself; the only thing it writes is a person's gate decision (approve / reject / override).
Start it with `evalsuite dashboard` (Streamlit, loopback by default).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only this folder on the path

import streamlit as st  # noqa: E402

from dashboards import data  # noqa: E402
from evalsuite.database import database_url, mask_passwords, redact  # noqa: E402
from evalsuite.errors import EvalsuiteError  # noqa: E402
from dashboards.views import curves, gate, human, leaderboards, monitor, ppl, retrieval, runs, sweeps  # noqa: E402

PAGES = {
    "Runs": runs.render,
    "Perplexity vs length": ppl.render,
    "Generation quality": curves.render_generation,
    "ASR-WER drift": curves.render_asr,
    "Human eval": human.render,
    "Training monitor": monitor.render,
    "Gate": gate.render,
    "Leaderboards": leaderboards.render,
    "Sweeps": sweeps.render,
    "Retrieval heatmaps": retrieval.render,  # after main's pages: the docs' screenshots keep their numbers
}

st.set_page_config(page_title="ttt-omni results", layout="wide")
url = database_url()
problem = data.missing_store(url)
if problem:
    st.title("ttt-omni results")
    st.info(problem)
    st.stop()
try:
    store = data.open_store(url)
except EvalsuiteError as e:  # e.g. a file that is not a database: say so, with the URL's password hidden
    st.title("ttt-omni results")
    st.error(str(e))
    st.stop()
page = st.sidebar.radio("Page", list(PAGES), key="page")
st.sidebar.caption(f"results store: {redact(url)}")
try:
    PAGES[page](store)
except EvalsuiteError as e:  # a page's error may quote a URL (a sweep's storage): never its password
    st.error(mask_passwords(str(e)))
