"""OpenGL (moderngl) viewer: renderer, headless sensors and the fly-through app.

Never imports torch or the generator: tiles arrive through ``streaming.client``.
"""
