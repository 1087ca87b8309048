"""Writing a new plugin project from the templates beside this module (``cleangpt new-plugin``).

A project is rendered from two template folders: ``templates/common`` (pyproject, README, the package's light
``__init__`` and ``plugin.py``) and ``templates/<kind>`` (the config schema, a working implementation and its
tests). Template files end in ``.tmpl`` and use `string.Template` placeholders (``$package``, ``${camel}``); in
their paths, ``__package__`` stands for the package folder, ``__snake__`` for the plugin's snake_case name and
``__dot__`` for a leading dot (package data globs skip hidden files).
A ``<kind>/NAME.EXT.fragment`` file is no file of the project but the value of the placeholder ``$NAME_EXT``
(``usage.md.fragment`` fills ``$usage_md`` in the README). Rendering fails on an unknown placeholder, so a
template cannot silently ship a ``$typo``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from string import Template

from cleangpt_core import __version__
from cleangpt_core.checkpoints.atomic_write import atomic_target
from cleangpt_core.errors import ScaffoldError
from cleangpt_core.plugin_api import PLUGIN_API_VERSION

_NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
MAX_NAME_LENGTH = 24  # the generated code stays within 120 columns up to this length
_TEMPLATE_SUFFIX = ".tmpl"
_FRAGMENT_SUFFIX = ".fragment"


@dataclass(frozen=True)
class KindTemplate:
    """What differs between the kinds of plugin project, besides their template folder."""

    hook: str
    module: str  # the implementation module inside the package
    export: str  # the implementation's name, a format string over the plugin's names
    config_class: str
    summary: str


KIND_TEMPLATES = {
    "sampler": KindTemplate(
        hook="cleangpt_register_samplers",
        module="sampler",
        export="{snake}_sampling",
        config_class="{camel}SamplerConfig",
        summary="locally typical sampling (the tokens whose surprise is closest to the entropy)",
    ),
    "architecture": KindTemplate(
        hook="cleangpt_register_architectures",
        module="model",
        export="{camel}TransformerModel",
        config_class="{camel}Config",
        summary="GPT-style decoder with parallel attention and MLP sub-blocks (GPT-J), built from Vanilla's parts",
    ),
    "tokenizer": KindTemplate(
        hook="cleangpt_register_tokenizers",
        module="tokenizer",
        export="{camel}Tokenizer",
        config_class="{camel}TokenizerConfig",
        summary="frequent words as single tokens, characters otherwise; vocabulary learned from the corpus",
    ),
    "trainer": KindTemplate(
        hook="cleangpt_register_trainers",
        module="trainer",
        export="{camel}Trainer",
        config_class="{camel}TrainerConfig",
        summary="the simple trainer with unit-wise adaptive gradient clipping (AGC, Brock et al. 2021)",
    ),
    "optimizer": KindTemplate(
        hook="cleangpt_register_optimizers",
        module="optimizer",
        export="{snake}_optimizer",
        config_class="{camel}OptimizerConfig",
        summary="Lion: the sign of an interpolated momentum, one state buffer per weight (Chen et al. 2023)",
    ),
    "schedule": KindTemplate(
        hook="cleangpt_register_schedules",
        module="schedule",
        export="{snake}_schedule",
        config_class="{camel}ScheduleConfig",
        summary="linear warmup, then the learning rate falls as 1/sqrt(step) (Vaswani et al. 2017)",
    ),
    # The parts of the decoder (plugin API 1.1): a part plugs into every preset by config.
    "attention": KindTemplate(
        hook="cleangpt_register_attention",
        module="attention",
        export="{camel}Attention",
        config_class="{camel}AttentionOptions",
        summary="causal attention whose heads' outputs pass a sigmoid gate of the input (Qiu et al. 2025)",
    ),
    "feedforward": KindTemplate(
        hook="cleangpt_register_feedforward",
        module="feedforward",
        export="{camel}FeedForward",
        config_class="{camel}FeedForwardOptions",
        summary="a gated linear unit, GELU-gated by default (GEGLU; GLU variants, Shazeer 2020)",
    ),
    "norm": KindTemplate(
        hook="cleangpt_register_norms",
        module="norm",
        export="{camel}Norm",
        config_class="{camel}NormOptions",
        summary="Dynamic Tanh, weight * tanh(alpha * x) + bias, in place of normalisation (Zhu et al. 2025)",
    ),
    "position": KindTemplate(
        hook="cleangpt_register_positions",
        module="position",
        export="{camel}Positions",
        config_class="{camel}PositionOptions",
        summary="fixed sinusoidal positions added to the token embeddings (Vaswani et al. 2017)",
    ),
    "residual": KindTemplate(
        hook="cleangpt_register_residuals",
        module="residual",
        export="{camel}Block",
        config_class="{camel}BlockOptions",
        summary="a pre-norm block whose sub-blocks' outputs get learned per-channel scales (LayerScale, CaiT)",
    ),
}

SCAFFOLD_KINDS = tuple(KIND_TEMPLATES)  # the kinds `cleangpt new-plugin` writes a project for


@dataclass(frozen=True)
class PluginNames:
    """Every name a plugin project derives from the one its author gives (``my-sampler``)."""

    name: str
    kind: str

    @classmethod
    def parse(cls, name: str, kind: str) -> PluginNames:
        """Check `name` and `kind`, raising `ScaffoldError` that says what a valid name looks like."""
        if kind not in SCAFFOLD_KINDS:
            raise ScaffoldError(
                f"--kind {kind!r} is not a kind of plugin project; choose one of {', '.join(SCAFFOLD_KINDS)}"
            )
        if name.lower().startswith(("cleangpt-", "cleangpt_")):
            raise ScaffoldError(
                f"plugin name {name!r}: leave out the 'cleangpt-' prefix, it is added for you "
                f"(the distribution becomes 'cleangpt-NAME', the package 'cleangpt_NAME')"
            )
        if not _NAME_PATTERN.fullmatch(name):
            raise ScaffoldError(
                f"plugin name {name!r} is not valid: use lowercase letters and digits, starting with a letter, "
                "with single '-' or '_' between words (e.g. 'typical' or 'my-sampler')"
            )
        if len(name) > MAX_NAME_LENGTH:
            raise ScaffoldError(f"plugin name {name!r} is {len(name)} characters long; use at most {MAX_NAME_LENGTH}")
        return cls(name, kind)

    @property
    def snake(self) -> str:
        """``my_sampler``: the entry-point name and the stem of Python names."""
        return self.name.replace("-", "_")

    @property
    def camel(self) -> str:
        """``MySampler``: the stem of class names."""
        return "".join(part.capitalize() for part in self.snake.split("_"))

    @property
    def package(self) -> str:
        """``cleangpt_my_sampler``: the import package."""
        return f"cleangpt_{self.snake}"

    @property
    def distribution(self) -> str:
        """``cleangpt-my-sampler``: the name on PyPI and of the project folder."""
        return f"cleangpt-{self.snake.replace('_', '-')}"

    @property
    def component(self) -> str:
        """The registered component name: CamelCase for an architecture (as Vanilla, SASP), snake_case otherwise."""
        return self.camel if self.kind == "architecture" else self.snake


def core_requirement(version: str = __version__) -> str:
    """The cleangpt-core range a new plugin depends on: this release series (``>=0.1,<0.2``; ``>=1.2,<2``).

    Before 1.0 a minor release may break plugins, so the range stops at the next minor; from 1.0 on only a
    major release may.
    """
    major, minor = (int(part) for part in version.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else str(major + 1)
    return f"cleangpt-core>={major}.{minor},<{upper}"


def template_values(names: PluginNames) -> dict[str, str]:
    """The placeholders every template may use."""
    spec = KIND_TEMPLATES[names.kind]
    words = {"snake": names.snake, "camel": names.camel}
    return {
        "name": names.name,
        "kind": names.kind,
        "snake": names.snake,
        "camel": names.camel,
        "package": names.package,
        "distribution": names.distribution,
        "component": names.component,
        "hook": spec.hook,
        "module": spec.module,
        "export": spec.export.format(**words),
        "config_class": spec.config_class.format(**words),
        "summary": spec.summary,
        "api_version": PLUGIN_API_VERSION,
        "core_requirement": core_requirement(),
        "core_version": __version__,
    }


def _template_root() -> Traversable:
    return resources.files("cleangpt_core.scaffold").joinpath("templates")


def _walk(folder: Traversable, prefix: PurePosixPath) -> list[tuple[PurePosixPath, Traversable]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.is_dir():
            found.extend(_walk(entry, prefix / entry.name))
        elif entry.name.endswith(_TEMPLATE_SUFFIX):
            found.append((prefix / entry.name, entry))
    return found


def _render(template: Traversable, values: dict[str, str], where: str) -> str:
    try:
        return Template(template.read_text(encoding="utf-8")).substitute(values)
    except (KeyError, ValueError) as error:  # a template bug, not a user error: say which file
        raise RuntimeError(f"scaffold template {where} has a bad placeholder: {error}") from error


def render_project(names: PluginNames) -> dict[PurePosixPath, str]:
    """Every file of the project, by its path relative to the project folder."""
    values = template_values(names)
    kind_folder = _template_root().joinpath(names.kind)
    for entry in kind_folder.iterdir():
        if entry.name.endswith(_FRAGMENT_SUFFIX):
            placeholder = entry.name.removesuffix(_FRAGMENT_SUFFIX).replace(".", "_")
            values[placeholder] = _render(entry, values, f"{names.kind}/{entry.name}").rstrip("\n")
    templates = [*_walk(_template_root().joinpath("common"), PurePosixPath()), *_walk(kind_folder, PurePosixPath())]
    files = {}
    for path, template in templates:
        target = str(path).removesuffix(_TEMPLATE_SUFFIX)
        for marker, value in (("__package__", names.package), ("__snake__", names.snake), ("__dot__", ".")):
            target = target.replace(marker, value)
        files[PurePosixPath(target)] = _render(template, values, str(path))
    return files


def check_name_is_free(names: PluginNames) -> None:
    """Refuse a name an installed distribution or component already has: the new plugin would be shadowed."""
    from cleangpt_core.registry import get_registry

    try:
        installed = metadata.distribution(names.distribution)
    except metadata.PackageNotFoundError:
        installed = None
    if installed is not None:
        raise ScaffoldError(
            f"a distribution named {names.distribution} ({installed.version}) is installed already; "
            "choose another plugin name"
        )
    for component in get_registry().components(names.kind):
        taken = {component.name.lower(), *(alias.lower() for alias in component.aliases)}
        if names.component.lower() in taken:
            raise ScaffoldError(
                f"a {names.kind} named {component.name!r} is provided by {component.distribution} already; "
                "choose another plugin name"
            )


def create_plugin_project(name: str, kind: str, parent: str | Path = ".") -> Path:
    """Write the project ``<parent>/cleangpt-<name>`` and return its path; nothing is written on an error.

    The files are written to a temporary folder beside the target and renamed into place, so an
    interrupted run leaves no half-written project.
    """
    names = PluginNames.parse(name, kind)
    check_name_is_free(names)
    parent = Path(parent)
    target = parent / names.distribution
    if target.exists():
        raise ScaffoldError(f"{target} exists already; remove it or pass another --dir (nothing was written)")
    files = render_project(names)
    parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(target, directory=True) as staging:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return target
