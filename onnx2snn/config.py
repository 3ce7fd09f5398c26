"""Configuration files (TOML): convert options and energy costs.

``convert --config FILE`` reads every convert option from a TOML file (keys as the long option
names, with ``-`` or ``_``); flags given on the command line override it. A spiking ONNX file is
also accepted as FILE: its ``onnx2snn.config`` metadata holds the effective configuration that
made it, so the conversion can be repeated.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .dialect import METADATA, load_model
from .errors import ConfigError

CONFIG_KEY = METADATA.config


def read_toml(path: str | os.PathLike) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None


def config_from_model(path: str | os.PathLike) -> dict:
    """The effective convert configuration stored in a spiking file's metadata."""
    props = {p.key: p.value for p in load_model(path, check=False).metadata_props}
    if CONFIG_KEY not in props:
        raise ConfigError(f"{path}: stores no {CONFIG_KEY} metadata (made by an older onnx2snn?); "
                          "give a TOML config file instead")
    try:
        values = json.loads(props[CONFIG_KEY])
    except ValueError:
        raise ConfigError(f"{path}: its {CONFIG_KEY} metadata is not JSON") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: its {CONFIG_KEY} metadata is not a table of options")
    return values


def load_config(path: str | os.PathLike) -> dict:
    """Options from a TOML file or from a spiking ONNX file's metadata, keys with ``_``."""
    values = config_from_model(path) if Path(path).suffix.lower() == ".onnx" else read_toml(path)
    if "convert" in values and isinstance(values["convert"], dict):
        values = values["convert"]
    return {str(k).replace("-", "_"): v for k, v in values.items()}
