"""Stages (pure functions over Arrow tables) and the Streamz graph on Dask that wires them."""
