"""osmo_core: workflow spec, DAG engine, scheduler, backends and store. No Jupyter imports."""

__version__ = "0.1.0"
