"""GL contexts: a headless EGL one (llvmpipe on CPU, the GPU's driver where present)
and a GLFW window when a display exists."""

from __future__ import annotations

import os

import moderngl


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def headless_context() -> moderngl.Context:
    """A standalone OpenGL 3.3+ core context through EGL; raises RuntimeError if none."""
    try:
        return moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as exc:
        raise RuntimeError(
            "no headless OpenGL: install Mesa's EGL (apt-get install -y libegl1 libgl1 libegl-mesa0 "
            f"libgl1-mesa-dri) or run on a machine with a GPU driver ({exc})"
        ) from exc


class Window:
    """A GLFW window with a moderngl context; queues key events for the fly controls."""

    def __init__(self, size: tuple[int, int], title: str = "worldstream"):
        import glfw

        if not glfw.init():
            raise RuntimeError("glfw could not initialise (no display?)")
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        self.glfw = glfw
        self.handle = glfw.create_window(size[0], size[1], title, None, None)
        if not self.handle:
            glfw.terminate()
            raise RuntimeError("glfw could not open a window")
        glfw.make_context_current(self.handle)
        glfw.swap_interval(0)
        self.ctx = moderngl.create_context(require=330)
        self.scroll = 0.0
        glfw.set_scroll_callback(self.handle, self._on_scroll)
        # Mouse look: hide and capture the cursor; motion is read as deltas.
        glfw.set_input_mode(self.handle, glfw.CURSOR, glfw.CURSOR_DISABLED)
        self._cursor = glfw.get_cursor_pos(self.handle)
        # Keys as events from the callback (during poll_events), so short taps are not missed.
        from viewer.controls import KeyEvents

        self.keys = KeyEvents(self.KEYS + ("ESCAPE",))
        self._key_names = {getattr(glfw, "KEY_" + n): n for n in self.keys.names}
        glfw.set_key_callback(self.handle, self._on_key)

    def _on_key(self, _win, key, _scancode, action, _mods):
        name = self._key_names.get(key)
        if name is not None and action in (self.glfw.PRESS, self.glfw.RELEASE):
            self.keys.event(name, action == self.glfw.PRESS)

    def _on_scroll(self, _win, _dx, dy):
        self.scroll += dy

    @property
    def size(self) -> tuple[int, int]:
        return self.glfw.get_framebuffer_size(self.handle)

    def should_close(self) -> bool:
        return bool(self.glfw.window_should_close(self.handle))

    def key(self, name: str) -> bool:
        """True while ``name`` is down, or once after it went down (however briefly)."""
        return self.keys.seen(name)

    KEYS = ("W", "A", "S", "D", "Q", "E", "C", "SPACE", "LEFT_SHIFT", "F")

    def input(self):
        """This frame's viewer.controls.InputState (keys held, new presses, mouse, scroll)."""
        from viewer.controls import InputState

        held, pressed = self.keys.frame()
        x, y = self.glfw.get_cursor_pos(self.handle)
        dx, dy = x - self._cursor[0], y - self._cursor[1]
        self._cursor = (x, y)
        state = InputState(keys=held, mouse_dx_px=dx, mouse_dy_px=dy, scroll=self.scroll, pressed=pressed)
        self.scroll = 0.0
        return state

    def swap(self) -> None:
        self.glfw.swap_buffers(self.handle)
        self.glfw.poll_events()

    def close(self) -> None:
        self.glfw.destroy_window(self.handle)
        self.glfw.terminate()
