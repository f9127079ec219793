"""Leaderboards: the tables of leaderboards/*.yaml from the store (as `evalsuite leaderboard build` writes them)."""
from __future__ import annotations

import streamlit as st

from evalsuite.errors import EvalsuiteError
from evalsuite.leaderboard import load_definitions, table
from ttt_omni.resources import bundled


def render(store) -> None:
    st.title("Leaderboards")
    st.caption(f"Definitions in {bundled('leaderboards')}; `evalsuite leaderboard build` writes each as NAME.md and NAME.csv.")
    try:
        boards = load_definitions()
    except EvalsuiteError as e:
        st.error(str(e))
        return
    for board in boards:
        st.subheader(board.title)
        if board.description:
            st.caption(board.description)
        try:
            wide = table(store, board)
        except EvalsuiteError as e:
            st.error(str(e))
            continue
        if wide.empty:
            st.info(f"No finished runs of task `{board.task}` yet.")
        else:
            st.table(wide, hide_index=True)  # small and static: every cell shown whole
