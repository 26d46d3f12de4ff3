"""The zoo of published models (params.yaml ``zoo``): which entries can run here, running each.

A checkpoint entry needs its file; a peer needs its package (found when it is loaded).
Entries that cannot run are skipped with the reason, so a missing download never stops
the pipeline and the leaderboard says what it leaves out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from facerec.config import Params, ZooEntry
from facerec.models.peers import PeerUnavailable
from facerec.registry import PEERS
from facerec.runtime.io import write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRef:
    """A model to score: ``arch`` None for a facerec checkpoint (it records its own), a
    registered architecture for an upstream checkpoint, a peer's name for a peer (no path)."""

    name: str
    arch: str | None
    path: Path | None

    @property
    def is_peer(self) -> bool:
        return self.arch in PEERS


def resolve_model(name: str, params: Params, checkpoint: Path | None = None) -> ModelRef:
    """A model by the name the leaderboard knows it by: ours (``train.model_name``, its
    checkpoint ``models/<name>/model.pt`` unless given), a zoo entry, or a peer by its
    registered name."""
    if name == params.train.model_name:
        return ModelRef(name, None, checkpoint or Path("models") / name / "model.pt")
    if name in params.zoo:
        entry = params.zoo[name]
        return ModelRef(name, entry.arch, entry.path)
    if name in PEERS:
        return ModelRef(name, name, None)
    raise ValueError(f"unknown model {name!r}: not train.model_name ({params.train.model_name}), a zoo entry "
                     f"({', '.join(params.zoo) or 'none'}) or a peer ({', '.join(PEERS.names)})")


def missing_checkpoint(entry: ZooEntry | ModelRef) -> str | None:
    """Why a checkpoint entry cannot run here (its file is missing); None for peers and present files."""
    if entry.arch in PEERS or (entry.path is not None and entry.path.is_file()):
        return None
    return f"checkpoint file not found: {entry.path}"


def run_zoo(entries: list[ZooEntry], out_dir: Path, report_path: Path,
            run: Callable[[ZooEntry], dict]) -> dict:
    """``run(entry)`` for every entry that can run, writing OUT/<name>.json; ``report_path``
    lists those that ran and the skipped ones with their reason. Files of entries no longer
    listed are removed first, so the folder holds exactly this zoo."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.json"):
        stale.unlink()
    report: dict = {"ran": [], "skipped": {}}
    for entry in entries:
        reason = missing_checkpoint(entry)
        if reason is None:
            log.info("zoo entry %s (%s)", entry.name, entry.arch)
            try:
                write_json(out_dir / f"{entry.name}.json", run(entry))
                report["ran"].append(entry.name)
                continue
            except PeerUnavailable as error:
                reason = str(error)
        log.warning("zoo entry %s (%s) skipped: %s", entry.name, entry.arch, reason)
        report["skipped"][entry.name] = reason
    write_json(report_path, report)
    return report
