"""The marketer's dashboard: `streamlit run dashboard.py`."""

import streamlit as st

st.set_page_config(page_title="Nurture", page_icon="🎄", layout="wide")
st.title("Nurture")
st.write("The dashboard is being built. The intake API and the worker are running.")
