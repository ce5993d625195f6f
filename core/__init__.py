"""Nightjar: an astronomical alert broker for the Rubin/LSST and ZTF alert streams.

The import package maps the top-level folders: ``nightjar`` is ``core/`` (settings, CLI, logging),
``nightjar.streams`` is ``streams/`` (Kafka in and out, decoding), ``nightjar.pipelines`` the Streamz graph
on Dask, ``nightjar.lake`` the Delta tables, ``nightjar.sql`` the DuckDB engine and ``nightjar.api`` the
FastAPI application.
"""

__version__ = "0.1.0"
