"""minibev: a mini BEVFormer trained on synthetic surround-camera scenes (see docs/minibev.md)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types


def _stub_cv2_if_missing() -> None:
    """Let mmengine's Runner import without OpenCV.

    mmengine-lite 0.10.7 drops the opencv dependency but `mmengine.hooks` and
    `mmengine.visualization` still `import cv2` at module level, although only image drawing
    uses it; minibev logs scalars only. Where OpenCV is installed nothing happens; otherwise a
    placeholder module stands in and any actual use of it raises ImportError.
    """
    if "cv2" in sys.modules or importlib.util.find_spec("cv2") is not None:
        return
    stub = types.ModuleType("cv2")
    stub.__doc__ = "placeholder installed by scaleout.minibev: OpenCV is not installed"
    stub.__version__ = "not installed"
    # A spec, so that other libraries' importlib.util.find_spec("cv2") answers instead of
    # raising "cv2.__spec__ is None".
    stub.__spec__ = importlib.machinery.ModuleSpec("cv2", None)

    def _missing(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(f"cv2.{name} needs OpenCV (pip install opencv-python-headless)")

    stub.__getattr__ = _missing  # type: ignore[method-assign]
    sys.modules["cv2"] = stub


_stub_cv2_if_missing()
