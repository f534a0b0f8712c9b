"""The optimizer's settings as the co-scaled knobs see them, for the mmcv and mmengine families.

Both families build the optimizer from one dict (mmcv `optimizer`, mmengine
`optim_wrapper.optimizer`) holding `type`, `weight_decay` and `betas`. The reference is the
config's value; where the config leaves it to the optimizer's default (BEVFormer sets no
betas), the default of that optimizer is the reference and its source says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# torch.optim's defaults for the optimizers these trainers configure.
DEFAULTS: dict[str, dict[str, Any]] = {
    "AdamW": {"weight_decay": 0.01, "betas": (0.9, 0.999)},
    "Adam": {"weight_decay": 0.0, "betas": (0.9, 0.999)},
}
ADAM_BETAS = (0.9, 0.999)
# The knobs an adapter of these families writes into each trial (scaleout.trainers.base).
KNOB_KEYS = frozenset(
    {"lr", "warmup_iters", "min_lr_ratio", "weight_decay", "beta1", "beta2", "epochs",
     "samples_per_gpu"}
)  # fmt: skip


def optimizer_reference(
    optimizer: Any, key: str, where: str
) -> tuple[dict[str, float], dict[str, str]]:
    """weight_decay, beta1 and beta2 of the optimizer dict at `key` of the config `where`,
    with their sources. A value the dict leaves out is its optimizer's default where the type
    is known (Adam, AdamW), else left out."""
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    if not isinstance(optimizer, Mapping):
        return values, sources
    kind = str(optimizer.get("type", ""))
    default = DEFAULTS.get(kind, {})
    wd = optimizer.get("weight_decay")
    if wd is not None:
        values["weight_decay"], sources["weight_decay"] = float(wd), f"{where}: {key}.weight_decay"
    elif "weight_decay" in default:
        values["weight_decay"] = default["weight_decay"]
        sources["weight_decay"] = f"{where}: no {key}.weight_decay ({kind}'s default)"
    betas = optimizer.get("betas")
    if isinstance(betas, (list, tuple)) and len(betas) == 2:
        for i, name in enumerate(("beta1", "beta2")):
            values[name], sources[name] = float(betas[i]), f"{where}: {key}.betas[{i}]"
    elif "betas" in default:
        for i, name in enumerate(("beta1", "beta2")):
            values[name] = default["betas"][i]
            sources[name] = f"{where}: no {key}.betas ({kind}'s default)"
    return values, sources


def optimizer_overrides(params: Any, reference: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer keys a trial sets ({weight_decay, betas}), for the knobs it carries.
    `betas` is written whole: a trial that scales only beta2 keeps the reference's beta1."""
    out: dict[str, Any] = {}
    if params.get("weight_decay") is not None:
        out["weight_decay"] = float(params["weight_decay"])
    if params.get("beta1") is not None or params.get("beta2") is not None:
        # Where the config's optimizer has no known default, Adam's, as the plan assumed.
        b1 = params.get("beta1", reference.get("beta1", ADAM_BETAS[0]))
        b2 = params.get("beta2", reference.get("beta2", ADAM_BETAS[1]))
        out["betas"] = (float(b1), float(b2))
    return out
