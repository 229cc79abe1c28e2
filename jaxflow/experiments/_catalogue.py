"""Every preset, by name: one explicit list, so that what is registered does not depend on
what happened to be imported."""

from . import halder, zeno
from ._preset import AbstractPreset


PRESETS: dict[str, type[AbstractPreset]] = {
    cls.name: cls for cls in (*zeno.PRESETS, *halder.PRESETS)
}


def get_preset(name: str) -> type[AbstractPreset]:
    """The preset class registered as `name`; a `KeyError` lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(
            f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}."
        ) from None
