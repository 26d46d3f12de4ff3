"""Each stage's code dependencies, computed from its imports and checked against dvc.yaml.

A stage's code is its script (``stages/<stage>.py``) and every project module it imports,
transitively: ``import`` statements anywhere in a module (inside functions too, where the
library defers heavy imports) plus the ``__init__.py`` of every package on the way, which
Python runs on import. dvc.yaml must declare exactly those files (a folder stands for all
the ``.py`` files under it): a missing one lets a code change go unnoticed by ``dvc repro``,
an extra one reruns the stage for a change it cannot see.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

CODE_ROOTS = ("facerec", "stages")
_SCRIPT = re.compile(r"\bpython\s+(stages/\S+\.py)")


def _module_file(root: Path, module: str) -> Path | None:
    """The file of an in-project module name (``facerec.models.heads``), or None."""
    parts = module.split(".")
    if parts[0] not in CODE_ROOTS:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module name an import statement of ``path`` names, ``from x import y`` giving
    both ``x`` and ``x.y`` (y may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the importing module's package
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def _with_packages(module: str) -> list[str]:
    """``a.b.c`` and the packages Python imports first: ``a``, ``a.b``."""
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


def imported_files(root: Path, script: Path) -> set[Path]:
    """``script`` and every project file it imports, transitively, relative to ``root``.

    A script's own folder is on ``sys.path`` when Python runs it, so ``stages/_path.py``
    is reached as ``import _path``."""
    found: set[Path] = set()
    pending = [(root / script, script.parent.name)]
    while pending:
        path, package = pending.pop()
        if path in found:
            continue
        found.add(path)
        for module in _imported_modules(path, package):
            local = path.parent / f"{module}.py"
            if "." not in module and local.is_file():
                pending.append((local, package))
                continue
            for name in _with_packages(module):
                file = _module_file(root, name)
                if file is not None:
                    is_package = file.name == "__init__.py"
                    pending.append((file, name if is_package else name.rpartition(".")[0]))
    return {path.relative_to(root) for path in found}


def _code_files(root: Path, declared: str) -> set[Path]:
    """The .py files a dvc.yaml dep names: the file, or every .py file under the folder."""
    path = root / declared
    if path.is_dir():
        return {file.relative_to(root) for file in path.rglob("*.py")}
    return {Path(declared)}


@dataclass(frozen=True)
class StageCode:
    stage: str
    script: Path
    declared: frozenset[Path]  # the code files dvc.yaml's deps name
    imported: frozenset[Path]  # the code files the script imports

    @property
    def missing(self) -> list[str]:
        return sorted(str(path) for path in self.imported - self.declared)

    @property
    def unused(self) -> list[str]:
        return sorted(str(path) for path in self.declared - self.imported)


def stage_code(root: Path, dvc_file: str = "dvc.yaml") -> list[StageCode]:
    """For every stage of ``root/dvc.yaml``, the code it declares and the code it imports
    (a foreach group is checked once: its items share one template)."""
    stages = yaml.safe_load((root / dvc_file).read_text())["stages"]
    result = []
    for name, stage in stages.items():
        definition = stage.get("do", stage)
        script = _SCRIPT.search(definition["cmd"])
        if script is None:
            raise ValueError(f"{dvc_file}: stage {name} does not run a stages/<stage>.py script")
        declared: set[Path] = set()
        for dep in definition.get("deps", []):
            if str(dep).split("/")[0] in CODE_ROOTS:
                declared |= _code_files(root, dep)
        result.append(StageCode(name, Path(script.group(1)), frozenset(declared),
                                frozenset(imported_files(root, Path(script.group(1))))))
    return result


def minimal_deps(root: Path, files: set[Path] | frozenset[Path]) -> list[str]:
    """``files`` as dvc.yaml deps: a folder wherever every .py file under it is in the set."""
    deps: set[str] = set()
    for file in files:
        chosen = file
        for folder in file.parents:
            if folder == Path(".") or folder.name in CODE_ROOTS:
                break
            if _code_files(root, str(folder)) <= set(files):
                chosen = folder
        deps.add(str(chosen))
    return sorted(deps)
