"""Tile streaming: a sans-I/O protocol (msgpack), a websocket server and a client.

Nothing here imports torch or the generator: the server is handed a tile source
by the entry point that composes it (``streaming.cli``).
"""
