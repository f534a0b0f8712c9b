"""Import this module to register every minibev type with mmengine's registries."""

from __future__ import annotations

from scaleout.minibev import dataset, detector, hooks, metric, optim  # noqa: F401
