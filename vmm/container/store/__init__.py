"""The state directory (``state.py``: its layout and lock), the typed
records on disk (``records.py``), names, and the content-addressed layer store
(``layers.py``).
"""
