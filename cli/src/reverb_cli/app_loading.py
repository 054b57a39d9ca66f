"""Finding the user's `reverb.App` from a command-line spec.

A spec is one of:
- `path/to/file.py` or `path/to/file.py:attribute`: the file is imported as a
  module named after it, with its folder first on `sys.path` (so it can import
  its neighbours);
- `package.module` or `package.module:attribute`: imported from the current
  folder or the installed packages.

Without an attribute, the module must hold exactly one `reverb.App`.
"""

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

import reverb


class AppLoadError(Exception):
    """The spec names no importable module, or no single `reverb.App` in it."""


def load_app(spec: str) -> reverb.App:
    """Import what `spec` names and return its `reverb.App`."""
    target, attribute = _split(spec)
    if target.endswith(".py") or Path(target).is_file():
        module = _import_file(Path(target))
    else:
        module = _import_module(target)
    if attribute is not None:
        return _attribute(module, attribute, spec)
    return _single_app(module, spec)


def _split(spec: str) -> tuple[str, str | None]:
    if not spec.strip():
        raise AppLoadError("no app given: pass path/to/file.py or module:attribute")
    target, colon, attribute = spec.rpartition(":")
    if not colon:
        return spec, None
    if not target or not attribute.isidentifier():
        raise AppLoadError(f"{spec!r} is not path/to/file.py[:attribute] or module[:attribute]")
    return target, attribute


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise AppLoadError(f"no such file: {path}")
    if path.suffix != ".py":
        raise AppLoadError(f"{path} is not a Python file (.py)")
    resolved = path.resolve()
    name = resolved.stem
    if not name.isidentifier():
        raise AppLoadError(f"{path}: the file name must be a valid Python module name")
    folder = str(resolved.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    specification = importlib.util.spec_from_file_location(name, resolved)
    if specification is None or specification.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(specification)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        specification.loader.exec_module(module)
    except Exception as error:
        if previous is None:
            del sys.modules[name]
        else:
            sys.modules[name] = previous
        raise AppLoadError(f"importing {path} failed: {_describe(error)}") from error
    return module


def _import_module(name: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise AppLoadError(f"{name!r} is neither a .py file nor a module name")
    if "" not in sys.path:
        # Like `python -m`: modules in the current folder are importable.
        sys.path.insert(0, "")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise AppLoadError(f"no module named {name!r}") from error
        raise AppLoadError(f"importing {name} failed: {_describe(error)}") from error
    except Exception as error:
        raise AppLoadError(f"importing {name} failed: {_describe(error)}") from error


def _attribute(module: ModuleType, attribute: str, spec: str) -> reverb.App:
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise AppLoadError(f"{spec}: {module.__name__} has no attribute {attribute!r}") from None
    if not isinstance(value, reverb.App):
        kind = type(value).__name__
        raise AppLoadError(f"{spec}: {attribute!r} is a {kind}, not a reverb.App")
    return value


def _single_app(module: ModuleType, spec: str) -> reverb.App:
    found = {name: value for name, value in vars(module).items() if isinstance(value, reverb.App)}
    apps = list({id(app): app for app in found.values()}.values())
    if not apps:
        raise AppLoadError(f"{spec}: no reverb.App found in {module.__name__}")
    if len(apps) > 1:
        names = ", ".join(sorted(found))
        raise AppLoadError(f"{spec}: several reverb.App instances ({names}); use {spec}:NAME")
    return apps[0]


def _describe(error: BaseException) -> str:
    """`Type: message (file, line N)` for the innermost frame, without a full stack trace."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, SyntaxError):
        return text
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        text += f" ({last.filename}, line {last.lineno})"
    return text
