from ._base import AbstractPreset


PRESETS: dict[str, type[AbstractPreset]] = {}


def register(cls: type[AbstractPreset]) -> type[AbstractPreset]:
    """Class decorator adding a preset to the registry under `cls.name`."""
    if cls.name in PRESETS:
        raise ValueError(f"A preset named {cls.name!r} is already registered.")
    PRESETS[cls.name] = cls
    return cls


def get_preset(name: str) -> type[AbstractPreset]:
    """The preset class registered as `name`; a `KeyError` lists the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(
            f"Unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}."
        ) from None
