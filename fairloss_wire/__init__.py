"""The wire format: the JSON form of the scoring service's answers and typed arrays.

The service writes it and the Python client reads it back; both import this package, and
neither reaches into the other (`tests/test_layers.py`). It needs the core, numpy, orjson's
numpy arrays and pybase64: no web server and no HTTP client.
"""
