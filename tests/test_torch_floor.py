"""The torch version pyproject.toml declares is the one the code needs, and the one feature above it says so.

Each API below is one the core uses on every install (imported by the trainers or called in every forward);
the declared floor must be at least the newest of them, and no higher. torch.optim.Muon (2.9) is optional:
the `muon` optimizer names the version it needs in one line.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import torch

from cleangpt_core.errors import ConfigError
from cleangpt_core.model import get_model
from cleangpt_core.trainers.optimizers import muon, parameter_roles

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# the API, where the core uses it, and the torch release that introduced it (release notes / the API's PR)
NEEDED = {
    "torch.distributed.fsdp.fully_shard (public path, pytorch#141868)": (2, 6),  # distributed/strategies.py
    "F.scaled_dot_product_attention(enable_gqa=...)": (2, 5),  # model/kv_cache.py
    "nn.RMSNorm, torch.is_autocast_enabled(device_type), fused AdamW on CPU": (2, 4),
    "torch.compiler.is_compiling": (2, 3),  # model/linear.py
}


MUON_DEFAULTS = {
    "lr": 0.02,
    "momentum": 0.95,
    "nesterov": True,
    "ns_steps": 5,
    "weight_decay": 0.0,
    "adjust_lr": "original",
    "adamw_lr": 3e-3,
    "adamw_betas": (0.9, 0.99),
    "adamw_eps": 1e-8,
    "adamw_weight_decay": 0.0,
}


def declared_floor() -> tuple[int, int]:
    dependencies = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    (torch_requirement,) = [d for d in dependencies if re.match(r"torch\b", d)]
    major, minor = re.search(r">=\s*(\d+)\.(\d+)", torch_requirement).groups()
    return int(major), int(minor)


def test_the_declared_torch_floor_is_the_newest_api_the_core_needs():
    assert declared_floor() == max(NEEDED.values())


def test_the_installed_torch_has_every_api_of_the_floor():
    from torch.distributed.fsdp import fully_shard  # noqa: F401

    query = torch.zeros(1, 4, 2, 8)
    torch.nn.functional.scaled_dot_product_attention(query, query[:, :2], query[:, :2], enable_gqa=True)


def test_muon_on_a_torch_without_it_names_the_version_it_needs(monkeypatch):
    # the torch installed here has Muon; an older one (which cannot be installed beside it) is stood in for
    monkeypatch.delattr(torch.optim, "Muon", raising=False)
    with pytest.raises(ConfigError, match=r"optimizer 'muon' needs torch>=2\.9 \(torch\.optim\.Muon\)") as error:
        model = get_model("Vanilla", vocab_size=32, n_layer=1, n_head=2, n_embd=16, block_size=8)
        muon(parameter_roles(model), **MUON_DEFAULTS)
    assert "\n" not in str(error.value)
