"""The data layer: storage URLs (fsspec, `storage.py`), content-addressed datasets
(`datasets.py`, with `refs.py` and `results.py`), a task's transfers (`transfer.py`) and
credentials (`credentials.py`). Nothing is imported here, so a module that needs one part (the
agent: transfers and credentials) does not pay for the others at start-up."""
