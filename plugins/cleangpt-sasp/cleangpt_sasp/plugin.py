"""Registers the SASP architecture with cleanGPT (light: the model module is imported only when used)."""

from cleangpt_core.plugin_api import Component, hookimpl
from cleangpt_sasp.config import SASPConfig

CLEANGPT_PLUGIN_API = "1.0"


@hookimpl
def cleangpt_register_architectures() -> list[Component]:
    """SASP: shaped attention and MLP in parallel, no skip connections (He & Hofmann, 2024)."""
    return [
        Component(
            name="SASP",
            kind="architecture",
            summary="simplified parallel block: shaped attention + MLP, no skips, no value/projection",
            target="cleangpt_sasp.model:SASPTransformerModel",
            config_schema=SASPConfig,
            aliases=("SAS-P",),
        )
    ]
