"""Load k-diffusion's ``sampling.py`` without the rest of the package.

``import k_diffusion`` imports everything (CLIP, wandb, clean-fid, torchvision,
safetensors...). Its ``sampling.py`` needs only torch, scipy, torchdiffeq,
torchsde, tqdm and one helper of ``utils`` (``append_dims``), so we execute
that file alone with a stub ``utils``. Install the optional extra with

    pip install --no-deps k-diffusion==0.1.1.post1

(``pip install mrdiffusion[fewstep]`` installs its light dependencies).
"""

from __future__ import annotations

import importlib.util
import sys
import types

__all__ = ["load_sampling", "VERSION"]

VERSION = "0.1.1.post1"
_NAME = "_kdiffusion_sampling_only"


def _append_dims(x, target_dims):
    """k-diffusion's ``utils.append_dims``: trailing singleton dimensions up to ``target_dims``."""
    n = target_dims - x.ndim
    if n < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * n]


def load_sampling():
    """k-diffusion's ``sampling`` module, or ``None`` (with the reason) when it is not installed."""
    if f"{_NAME}.sampling" in sys.modules:
        return sys.modules[f"{_NAME}.sampling"], None
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None, f"k-diffusion is not installed (pip install --no-deps k-diffusion=={VERSION})"
    path = f"{list(spec.submodule_search_locations)[0]}/sampling.py"
    pkg = types.ModuleType(_NAME)
    pkg.__path__ = []
    utils = types.ModuleType(f"{_NAME}.utils")
    utils.append_dims = _append_dims
    pkg.utils = utils
    sys.modules[_NAME], sys.modules[f"{_NAME}.utils"] = pkg, utils
    try:
        mod_spec = importlib.util.spec_from_file_location(f"{_NAME}.sampling", path)
        mod = importlib.util.module_from_spec(mod_spec)
        sys.modules[f"{_NAME}.sampling"] = mod
        mod_spec.loader.exec_module(mod)
    except Exception as err:  # a missing light dependency, say
        for k in (_NAME, f"{_NAME}.utils", f"{_NAME}.sampling"):
            sys.modules.pop(k, None)
        return None, f"k-diffusion's sampling.py failed to load: {type(err).__name__}: {err}"
    return mod, None
