"""`reverb host APP` and `reverb dev APP` find the user's app from a file path or a
`module:attribute`, and say clearly what is wrong when they cannot."""

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import reverb
from reverb_cli.app_loading import AppLoadError, load_app

ONE_APP = """
import reverb

app = reverb.App("{name}")
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working folder for the test, with sys.path and sys.modules restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    modules = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def write(folder: Path, relative: str, source: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def test_a_file_path_with_a_single_app(folder: Path) -> None:
    write(folder, "flows/shop_flows.py", ONE_APP.format(name="shop"))
    app = load_app("flows/shop_flows.py")
    assert isinstance(app, reverb.App)
    assert app.id == "shop"


def test_a_file_can_import_its_neighbours(folder: Path) -> None:
    write(folder, "project/helpers_for_app.py", "NAME = 'from-a-neighbour'\n")
    write(
        folder,
        "project/neighbour_app.py",
        "import reverb\nfrom helpers_for_app import NAME\napp = reverb.App(NAME)\n",
    )
    assert load_app(str(folder / "project/neighbour_app.py")).id == "from-a-neighbour"


def test_a_file_path_with_an_attribute(folder: Path) -> None:
    write(
        folder,
        "two_apps_file.py",
        "import reverb\nfirst = reverb.App('first')\nsecond = reverb.App('second')\n",
    )
    assert load_app("two_apps_file.py:second").id == "second"


def test_module_and_attribute_from_the_current_folder(folder: Path) -> None:
    write(folder, "pkg_shop/__init__.py", "")
    write(folder, "pkg_shop/workflows.py", ONE_APP.format(name="by-module"))
    assert load_app("pkg_shop.workflows:app").id == "by-module"


def test_a_module_without_attribute_takes_its_single_app(folder: Path) -> None:
    write(folder, "single_app_module.py", ONE_APP.format(name="single"))
    assert load_app("single_app_module").id == "single"


def test_the_same_app_under_two_names_counts_once(folder: Path) -> None:
    write(folder, "aliased_app.py", ONE_APP.format(name="aliased") + "alias = app\n")
    assert load_app("aliased_app.py").id == "aliased"


def test_several_apps_without_attribute_is_an_error_naming_them(folder: Path) -> None:
    write(folder, "several_apps.py", "import reverb\nb = reverb.App('b')\na = reverb.App('a')\n")
    with pytest.raises(AppLoadError, match=r"several reverb.App instances \(a, b\).*:NAME"):
        load_app("several_apps.py")


def test_no_app_is_an_error(folder: Path) -> None:
    write(folder, "no_app_here.py", "VALUE = 1\n")
    with pytest.raises(AppLoadError, match="no reverb.App found"):
        load_app("no_app_here.py")


def test_a_missing_file(folder: Path) -> None:
    with pytest.raises(AppLoadError, match="no such file: missing_file.py"):
        load_app("missing_file.py")


def test_a_missing_module(folder: Path) -> None:
    with pytest.raises(AppLoadError, match="no module named 'no_such_module_anywhere'"):
        load_app("no_such_module_anywhere:app")


def test_a_missing_attribute(folder: Path) -> None:
    write(folder, "has_app.py", ONE_APP.format(name="x"))
    with pytest.raises(AppLoadError, match="has no attribute 'other'"):
        load_app("has_app.py:other")


def test_an_attribute_that_is_not_an_app(folder: Path) -> None:
    write(folder, "not_an_app.py", "app = 42\n")
    with pytest.raises(AppLoadError, match="'app' is a int, not a reverb.App"):
        load_app("not_an_app:app")


def test_an_error_inside_the_user_module_names_its_line(folder: Path) -> None:
    write(folder, "broken_app.py", "import reverb\n\nraise RuntimeError('boom')\n")
    with pytest.raises(AppLoadError, match=r"RuntimeError: boom \(.*broken_app.py, line 3\)"):
        load_app("broken_app.py")
    assert "broken_app" not in sys.modules


def test_a_missing_import_inside_the_user_module_is_not_a_missing_module(folder: Path) -> None:
    write(folder, "imports_missing.py", "import not_installed_dependency\n")
    with pytest.raises(AppLoadError, match="importing imports_missing failed: ModuleNotFound"):
        load_app("imports_missing")


def test_a_syntax_error(folder: Path) -> None:
    write(folder, "syntax_error_app.py", "def broken(:\n")
    with pytest.raises(AppLoadError, match="SyntaxError"):
        load_app("syntax_error_app.py")


@pytest.mark.parametrize("spec", ["", "   ", "file.py:", ":app", "a-b:app", "x:not-an-id"])
def test_malformed_specs(folder: Path, spec: str) -> None:
    with pytest.raises(AppLoadError):
        load_app(spec)


def test_a_file_that_is_not_python(folder: Path) -> None:
    write(folder, "notes.txt", "hello\n")
    with pytest.raises(AppLoadError, match="not a Python file"):
        load_app("notes.txt")
