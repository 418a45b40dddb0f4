"""Where node processes run: the local process pool (and, later, a Dask cluster)."""
