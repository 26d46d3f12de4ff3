"""The zoo of published models (params.yaml ``zoo``): which entries can run here, running each.

A checkpoint entry needs its file; a peer needs its package (found when it is loaded).
Entries that cannot run are skipped with the reason, so a missing download never stops
the pipeline and the leaderboard says what it leaves out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from facerec.config import ZooEntry
from facerec.models.peers import PeerUnavailable
from facerec.registry import PEERS
from facerec.runtime.io import write_json

log = logging.getLogger(__name__)


def missing_checkpoint(entry: ZooEntry) -> str | None:
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
