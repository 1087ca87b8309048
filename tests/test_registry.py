"""The plugin registry: discovery, fault isolation, duplicates, API versions and environment controls."""

from __future__ import annotations

import pytest

from cleangpt_core.errors import (
    DuplicateComponentError,
    IncompatiblePluginError,
    PluginError,
    UnknownComponentError,
)
from cleangpt_core.plugin_api import PLUGIN_API_VERSION, Component
from cleangpt_core.registry import BUILTIN_DISTRIBUTION, api_version_problem, get_component, get_registry

SAMPLER_PLUGIN = """
import torch
from cleangpt_core.plugin_api import Component, hookimpl

CLEANGPT_PLUGIN_API = "1.0"


def last_token(logits, *, generator=None):
    return torch.full((logits.shape[0], 1), logits.shape[1] - 1, dtype=torch.long)


@hookimpl
def cleangpt_register_samplers():
    return [Component(name="{name}", kind="sampler", summary="always the last token",
                      target=__name__ + ":last_token")]
"""


def sampler_plugin(name: str = "last_token") -> str:
    return SAMPLER_PLUGIN.replace("{name}", name)


def failures_of(distribution: str) -> list:
    """The failures of one distribution (other installed plugins may fail on their own)."""
    return [f for f in get_registry().failures if f.distribution == distribution]


def test_builtins_are_registered_through_the_hooks(fresh_registry):
    registry = get_registry()
    builtin_modules = {plugin.entry_point for plugin in registry.plugins if plugin.distribution == BUILTIN_DISTRIBUTION}
    assert "cleangpt_core.core_plugins.samplers" in builtin_modules
    samplers = {c.name for c in registry.components("sampler") if c.distribution == BUILTIN_DISTRIBUTION}
    assert {"greedy", "temperature", "top_k", "top_p", "min_p", "combined"} <= samplers


def test_third_party_plugin_is_listed_with_its_distribution_and_usable(install_plugin):
    import torch

    install_plugin("cleangpt-lastsampler", sampler_plugin(), version="2.3.4")
    component = get_component("sampler", "last_token")
    assert (component.distribution, component.version) == ("cleangpt-lastsampler", "2.3.4")
    assert component.load()(torch.zeros(3, 7)).tolist() == [[6], [6], [6]]


def test_component_implementation_is_imported_only_when_used(install_plugin):
    import sys

    source = """
from cleangpt_core.plugin_api import Component, hookimpl
CLEANGPT_PLUGIN_API = "1.0"

@hookimpl
def cleangpt_register_samplers():
    return [Component(name="lazy", kind="sampler", summary="s", target="cleangpt_never_imported_module:fn")]
"""
    install_plugin("cleangpt-lazy", source)
    assert get_component("sampler", "lazy").target == "cleangpt_never_imported_module:fn"
    assert "cleangpt_never_imported_module" not in sys.modules


def test_plugin_that_fails_to_import_is_reported_and_others_keep_working(install_plugin):
    install_plugin("cleangpt-broken", "raise ImportError('needs a library that is not installed')", version="0.9")
    install_plugin("cleangpt-lastsampler", sampler_plugin())
    [failure] = failures_of("cleangpt-broken")
    assert failure.version == "0.9"
    assert "needs a library that is not installed" in failure.error
    assert failure.entry_point.startswith("cleangpt_test_plugin_")
    assert get_component("sampler", "last_token").distribution == "cleangpt-lastsampler"
    assert get_component("sampler", "top_p").distribution == BUILTIN_DISTRIBUTION


def test_plugin_whose_hook_raises_is_reported_and_skipped(install_plugin):
    source = """
from cleangpt_core.plugin_api import hookimpl
CLEANGPT_PLUGIN_API = "1.0"

@hookimpl
def cleangpt_register_samplers():
    raise RuntimeError("registration exploded")
"""
    install_plugin("cleangpt-exploding", source)
    [failure] = failures_of("cleangpt-exploding")
    assert "cleangpt_register_samplers raised RuntimeError: registration exploded" in failure.error
    assert get_component("sampler", "greedy").distribution == BUILTIN_DISTRIBUTION


def test_hook_returning_something_else_than_components_is_reported(install_plugin):
    source = """
from cleangpt_core.plugin_api import hookimpl
CLEANGPT_PLUGIN_API = "1.0"

@hookimpl
def cleangpt_register_samplers():
    return ["not a component"]
"""
    install_plugin("cleangpt-confused", source)
    [failure] = failures_of("cleangpt-confused")
    assert "expected Component objects" in failure.error


def test_strict_mode_reraises_plugin_failures(install_plugin, monkeypatch):
    monkeypatch.setenv("CLEANGPT_STRICT_PLUGINS", "1")
    install_plugin("cleangpt-broken", "raise ImportError('boom')")
    with pytest.raises(PluginError, match="cleangpt-broken.*boom"):
        get_registry()


@pytest.mark.parametrize(
    ("declared", "compatible"),
    [
        ("1.0", True),
        ("1.1", True),
        (PLUGIN_API_VERSION, True),
        ("1.99", False),
        ("2.0", False),
        ("0.9", False),
        (None, False),
        ("one", False),
    ],
)
def test_api_version_compatibility(declared, compatible):
    assert (api_version_problem(declared) is None) is compatible


def test_plugin_for_an_incompatible_api_is_reported_as_incompatible(install_plugin):
    install_plugin("cleangpt-future", sampler_plugin("future").replace('"1.0"', '"2.0"'), version="5.0")
    [failure] = failures_of("cleangpt-future")
    assert failure.incompatible
    assert "written for plugin API 2.0" in failure.error
    with pytest.raises(UnknownComponentError, match="failed to load: .*"):
        get_component("sampler", "future")


def test_incompatible_plugin_raises_in_strict_mode(install_plugin, monkeypatch):
    monkeypatch.setenv("CLEANGPT_STRICT_PLUGINS", "1")
    install_plugin("cleangpt-future", sampler_plugin("future").replace('"1.0"', '"2.0"'))
    with pytest.raises(IncompatiblePluginError):
        get_registry()


def test_plugin_that_states_no_api_version_is_reported(install_plugin):
    install_plugin("cleangpt-silent", sampler_plugin("silent").replace('CLEANGPT_PLUGIN_API = "1.0"', ""))
    [failure] = failures_of("cleangpt-silent")
    assert failure.incompatible
    assert "does not state CLEANGPT_PLUGIN_API" in failure.error


def test_duplicate_third_party_names_are_an_error_naming_both_distributions(install_plugin):
    install_plugin("cleangpt-alpha", sampler_plugin("twin"), version="1.1")
    install_plugin("cleangpt-beta", sampler_plugin("twin"), version="2.2")
    with pytest.raises(DuplicateComponentError) as error:
        get_component("sampler", "twin")
    assert "cleangpt-alpha 1.1" in str(error.value)
    assert "cleangpt-beta 2.2" in str(error.value)
    assert "'cleangpt-alpha:twin'" in str(error.value)


def test_qualified_name_picks_one_of_two_duplicates(install_plugin):
    install_plugin("cleangpt-alpha", sampler_plugin("twin"))
    install_plugin("cleangpt-beta", sampler_plugin("twin"))
    assert get_component("sampler", "cleangpt-beta:twin").distribution == "cleangpt-beta"
    assert get_component("sampler", "cleangpt_alpha:twin").distribution == "cleangpt-alpha"


def test_builtin_wins_a_name_clash_and_the_plugin_stays_reachable(install_plugin):
    install_plugin("cleangpt-shadow", sampler_plugin("greedy"))
    assert get_component("sampler", "greedy").distribution == BUILTIN_DISTRIBUTION
    assert get_component("sampler", "cleangpt-shadow:greedy").distribution == "cleangpt-shadow"
    assert [c.distribution for c in get_registry().shadowed] == ["cleangpt-shadow"]


def test_names_match_case_insensitively_and_by_alias(fresh_registry):
    assert get_component("sampler", "TOP_P").name == "top_p"
    assert get_component("sampler", "nucleus").name == "top_p"


def test_unknown_name_lists_what_exists_and_suggests_the_nearest(fresh_registry):
    with pytest.raises(UnknownComponentError, match=r"unknown sampler 'top_q'; did you mean 'top_[kp]'\?.*greedy"):
        get_component("sampler", "top_q")


def test_unknown_kind_is_an_error(fresh_registry):
    with pytest.raises(UnknownComponentError, match="kinds are: tokenizer, architecture, trainer, sampler"):
        get_component("regulariser", "dropout")


def test_component_of_the_wrong_kind_is_rejected(install_plugin):
    source = """
from cleangpt_core.plugin_api import Component, hookimpl
CLEANGPT_PLUGIN_API = "1.0"

@hookimpl
def cleangpt_register_samplers():
    return [Component(name="odd", kind="trainer", summary="s", target="x:y")]
"""
    install_plugin("cleangpt-odd", source)
    [failure] = failures_of("cleangpt-odd")
    assert "returned a 'trainer' component 'odd'" in failure.error


@pytest.mark.parametrize("variable", ["CLEANGPT_DISABLE_PLUGINS"])
@pytest.mark.parametrize("value", ["cleangpt-lastsampler", "lastsampler_entry", "CleanGPT_LastSampler"])
def test_plugins_can_be_blocked_by_distribution_or_entry_point_name(install_plugin, monkeypatch, variable, value):
    install_plugin("cleangpt-lastsampler", sampler_plugin(), entry_point="lastsampler_entry")
    monkeypatch.setenv(variable, value)
    with pytest.raises(UnknownComponentError):
        get_component("sampler", "last_token")
    assert get_component("sampler", "greedy")


def test_only_listed_plugins_load_when_an_allow_list_is_given(install_plugin, monkeypatch):
    install_plugin("cleangpt-alpha", sampler_plugin("alpha"))
    install_plugin("cleangpt-beta", sampler_plugin("beta"))
    monkeypatch.setenv("CLEANGPT_PLUGINS", "cleangpt-beta")
    names = {c.name for c in get_registry().components("sampler")}
    assert "beta" in names
    assert "alpha" not in names
    assert "greedy" in names  # built-ins always load


def test_trace_prints_every_hook_call_and_who_answered(install_plugin, monkeypatch, capsys):
    monkeypatch.setenv("CLEANGPT_TRACE_PLUGINS", "1")
    install_plugin("cleangpt-lastsampler", sampler_plugin())
    get_registry()
    trace = capsys.readouterr().err
    assert "[cleangpt trace] cleangpt_register_samplers() -> cleangpt-lastsampler:" in trace
    assert "[cleangpt trace] cleangpt_register_samplers() -> cleangpt-core:samplers" in trace
    assert "answered by 1 plugin(s)" in trace


def test_component_description_is_validated():
    with pytest.raises(ValueError, match="kind must be one of"):
        Component(name="x", kind="regulariser", summary="s", target="m:f")
    with pytest.raises(ValueError, match="may not contain ':'"):
        Component(name="a:b", kind="sampler", summary="s", target="m:f")
    with pytest.raises(ValueError, match="module:attribute"):
        Component(name="a", kind="sampler", summary="s", target="m.f")


@pytest.mark.parametrize(
    ("hook", "kind"),
    [
        ("cleangpt_register_tokenizers", "tokenizer"),
        ("cleangpt_register_architectures", "architecture"),
        ("cleangpt_register_trainers", "trainer"),
        ("cleangpt_register_samplers", "sampler"),
        ("cleangpt_register_attention", "attention"),
        ("cleangpt_register_feedforward", "feedforward"),
        ("cleangpt_register_norms", "norm"),
        ("cleangpt_register_positions", "position"),
        ("cleangpt_register_residuals", "residual"),
        ("cleangpt_register_optimizers", "optimizer"),
        ("cleangpt_register_schedules", "schedule"),
    ],
)
def test_each_registration_hook_adds_components_of_its_kind(install_plugin, hook, kind):
    source = f"""
from cleangpt_core.plugin_api import Component, hookimpl
CLEANGPT_PLUGIN_API = "1.0"

@hookimpl
def {hook}():
    return [Component(name="thirdparty_{kind}", kind="{kind}", summary="from a plugin", target="json:dumps")]
"""
    install_plugin(f"cleangpt-{kind}-plugin", source, version="0.0.1")
    component = get_component(kind, f"thirdparty_{kind}")
    assert (component.kind, component.distribution, component.version) == (kind, f"cleangpt-{kind}-plugin", "0.0.1")
    assert component.load().__name__ == "dumps"


def test_misspelled_hook_is_reported_with_a_suggestion(install_plugin):
    source = """
from cleangpt_core.plugin_api import Component, hookimpl
CLEANGPT_PLUGIN_API = "1.0"

@hookimpl
def cleangpt_register_sampler():
    return []
"""
    install_plugin("cleangpt-typo", source)
    [failure] = failures_of("cleangpt-typo")
    assert "unknown hook 'cleangpt_register_sampler'; did you mean 'cleangpt_register_samplers'?" in failure.error
