"""Tile streaming: a sans-I/O protocol (msgpack), a websocket server and a client.

Nothing here but ``streaming.cli`` imports torch, the generator or the viewer: the
server is handed a tile source (and optionally an HTTP handler), bakers a pyramid
opener, by the composition root ``streaming.cli`` (``tests/test_imports.py``).
"""
