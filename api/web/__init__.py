"""The web portal: server-rendered pages over the same library functions as the JSON API (``pages.install``)."""
