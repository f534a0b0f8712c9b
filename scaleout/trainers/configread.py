"""Read a trainer's config file as data, never as code that imports the trainer.

mmcv 1.x and mmengine configs are Python files with `_base_` inheritance. mmengine's
`Config.fromfile` resolves `_base_` lists and `{{_base_.x}}` references without importing
torch; with `import_custom_modules=False` it leaves `custom_imports` alone, and `plugin` /
`plugin_dir` are plain keys that only the trainer's own train.py acts on. So the trainer's
plugin code and CUDA ops need not be installed where the controller runs.

Scoped bases (`mmdet3d::_base_/default_runtime.py`, as mmdet3d 1.x projects write them)
resolve to `{repo}/configs/...` when the repo is given, and bases relative to the repo root
(EasyCV's `configs/base.py`) resolve there when not found beside the config.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from scaleout.core.errors import UsageError

MISSING: Any = object()
_patch_lock = threading.Lock()


def resolve_config_path(config: str | Path, repo: str | Path | None) -> Path:
    """The config's path: as given when absolute or found, else relative to the repo."""
    if repo is not None:
        repo_path = Path(repo).expanduser()
        if not repo_path.is_dir():
            raise UsageError(f"{repo}: --repo: the trainer repository does not exist")
    path = Path(config).expanduser()
    if not path.is_absolute() and repo is not None:
        path = Path(repo).expanduser() / path
    if not path.is_file():
        where = f" (looked in {repo})" if repo is not None else ""
        hint = None
        if repo is None and not path.is_absolute():
            hint = (
                "give --repo PATH to the trainer's checkout (the config is relative to it); "
                "without one, `scaleout plan` still works, and the built-in trainer sweeps "
                "search_spaces/lr_scaling.yaml"
            )
        raise UsageError(f"{config}: --config: the config file does not exist{where}", hint=hint)
    return path


def load_config(path: str | Path, *, repo: str | Path | None = None) -> Any:
    """The merged config (an mmengine `Config`) of `path`, `_base_` files included.

    Raises UsageError naming the file for anything the loader refuses (a syntax error,
    a missing base file, an import the config makes).
    """
    from mmengine.config import Config  # ~0.2 s; only commands that read configs pay it

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: the config file does not exist")
    try:
        with _scoped_bases_from(repo):
            return Config.fromfile(
                str(path),
                import_custom_modules=False,
                lazy_import=False,
                format_python_code=False,
            )
    except UsageError:
        raise
    except ImportError as e:
        raise UsageError(
            f"{path}: the config imports Python modules ({e}); scaleout reads configs as data "
            "and supports the dict style with `_base_`, not the lazy-import style"
        ) from e
    except Exception as e:
        raise UsageError(f"{path}: cannot read the config: {type(e).__name__}: {e}") from e


@contextlib.contextmanager
def _scoped_bases_from(repo: str | Path | None) -> Iterator[None]:
    """Map `pkg::rel/path.py` bases to `{repo}/configs/rel/path.py`.

    The repo is what the trainer runs, so its configs are the ones to read, installed
    package or not. mmengine has no hook for this, so its private `_get_cfg_path` is
    wrapped for the duration of one load (under a lock; loads are rare and short).
    """
    if repo is None:
        yield
        return
    from mmengine.config import Config

    original = Config._get_cfg_path
    repo_root = Path(repo).expanduser().resolve()
    repo_configs = repo_root / "configs"

    def get_cfg_path(cfg_path: str, filename: str) -> tuple[str, str | None]:
        if "::" in cfg_path:
            candidate = repo_configs / cfg_path.partition("::")[2]
            if candidate.is_file():
                return str(candidate), None
            raise UsageError(f"{filename}: _base_: {cfg_path!r} not found as {candidate}")
        local = Path(filename).parent / cfg_path
        in_repo = repo_root / cfg_path
        if not local.is_file() and in_repo.is_file():
            # EasyCV writes `_base_ = ['configs/base.py']`, relative to its repo root.
            return str(in_repo), None
        return original(cfg_path, filename)

    with _patch_lock:
        Config._get_cfg_path = staticmethod(get_cfg_path)
        try:
            yield
        finally:
            Config._get_cfg_path = staticmethod(original)


def lookup(cfg: Mapping[str, Any], dotted: str) -> Any:
    """cfg["a"]["b"] for "a.b", or MISSING. Integer parts index lists ("param_scheduler.0")."""
    node: Any = getattr(cfg, "_cfg_dict", cfg)  # an mmengine Config wraps its ConfigDict
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def first_of(cfg: Mapping[str, Any], *keys: str) -> tuple[str, Any] | None:
    """The first of `keys` present in cfg, with its value."""
    for key in keys:
        value = lookup(cfg, key)
        if value is not MISSING and value is not None:
            return key, value
    return None


def config_text(cfg: Any) -> str:
    """A standalone config file (no `_base_`) equivalent to cfg."""
    return cfg.pretty_text
