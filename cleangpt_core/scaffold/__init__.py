"""Plugin project templates and the code that renders them (``cleangpt new-plugin``)."""

from cleangpt_core.scaffold.project import (
    KIND_TEMPLATES,
    PluginNames,
    ScaffoldError,
    core_requirement,
    create_plugin_project,
    render_project,
)

__all__ = [
    "KIND_TEMPLATES",
    "PluginNames",
    "ScaffoldError",
    "core_requirement",
    "create_plugin_project",
    "render_project",
]
