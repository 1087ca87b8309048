"""Registers the research-workflow commands (new-plugin, compare)."""

from cleangpt_core.plugin_api import PLUGIN_API_VERSION

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION
