"""The import contracts of pyproject.toml hold: layers one way, no cycle, backends behind one
interface. A change that breaks one fails here with import-linter's account of the import."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept(capsys):
    from importlinter.cli import lint_imports

    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert status == 0, capsys.readouterr().out


def test_a_layer_upside_down_is_reported(tmp_path, capsys):
    """The check sees the real imports: vm placed above the command line breaks the contract."""
    from importlinter.cli import lint_imports

    config = tmp_path / "upside-down.toml"
    config.write_text('[tool.importlinter]\nroot_package = "zcfuzz"\n\n[[tool.importlinter.contracts]]\n'
                      'name = "upside down"\ntype = "layers"\nlayers = ["zcfuzz.vm", "zcfuzz.cli"]\n')
    assert lint_imports(config_filename=str(config), no_cache=True) == 1
    assert "zcfuzz.cli -> zcfuzz.vm" in capsys.readouterr().out
