"""The dashboard's shared UI: cached services, the access gate, the sidebar, charts and widgets.

Streamlit lives here and in pages/, never in core/.
"""
