"""The model registry (numpy-only): a directory of versioned bundles and an atomically switched pointer.

    <registry>/<version>/model.onnx, manifest.json   one bundle per version (time + short hash: sortable)
    <registry>/current                               the version workers serve (one line)
    <registry>/history.jsonl                         every promotion, oldest first (for rollback)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from model.bundle import (
    CHECKPOINT_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    Bundle,
    Manifest,
    load_bundle,
    now_iso,
    read_manifest,
    resolve_bundle_dir,
)
from model.errors import BundleError

CURRENT = "current"
HISTORY = "history.jsonl"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


class Registry:
    """Versioned bundles under one root; writes go to a temporary name and are renamed into place."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def versions(self) -> list[str]:
        """All published versions, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file())

    def current(self) -> str | None:
        p = self.root / CURRENT
        return p.read_text().strip() or None if p.is_file() else None

    def path(self, version: str) -> Path:
        p = self.root / version
        if not (p / "manifest.json").is_file():
            raise BundleError(f"version {version!r} is not in registry {self.root}")
        return p

    def manifest(self, version: str) -> Manifest:
        return read_manifest(self.path(version))

    def load(self, version: str | None = None, threads: int = 1) -> Bundle:
        """Load and verify a version (default: current)."""
        version = version or self.current()
        if version is None:
            raise BundleError(f"registry {self.root} has no current version")
        return load_bundle(self.path(version), threads=threads)

    def publish(self, bundle_dir: str | Path, promote: bool = True) -> str:
        """Copy a verified bundle into the registry under its manifest version; optionally make it current."""
        src = resolve_bundle_dir(bundle_dir)
        bundle = load_bundle(src)  # refuse to publish anything a worker would refuse to load
        version = bundle.version
        self.root.mkdir(parents=True, exist_ok=True)
        dest = self.root / version
        if not dest.exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self.root))
            for name in (MODEL_FILE, MANIFEST_FILE, CHECKPOINT_FILE):
                if (src / name).is_file():
                    shutil.copy2(src / name, tmp / name)
            os.chmod(tmp, 0o755)
            os.rename(tmp, dest)
        if promote:
            self.promote(version)
        return version

    def promote(self, version: str) -> None:
        """Switch `current` atomically to a version already in the registry (verified first)."""
        load_bundle(self.path(version))
        self._point_to(version)
        with open(self.root / HISTORY, "a") as f:
            f.write(json.dumps({"version": version, "at": now_iso()}) + "\n")

    def _point_to(self, version: str) -> None:
        _atomic_write(self.root / CURRENT, version + "\n")

    def history(self) -> list[str]:
        """Promotions, oldest first; the last one is current unless a rollback popped it."""
        p = self.root / HISTORY
        if not p.is_file():
            return []
        return [json.loads(line)["version"] for line in p.read_text().splitlines() if line.strip()]

    def rollback(self) -> str:
        """Undo the last promotion: `current` goes back to the version promoted before it; returns it."""
        lines = [ln for ln in (self.root / HISTORY).read_text().splitlines() if ln.strip()] \
            if (self.root / HISTORY).is_file() else []
        if len(lines) < 2:
            raise BundleError(f"registry {self.root}: nothing to roll back to")
        previous = json.loads(lines[-2])["version"]
        load_bundle(self.path(previous))
        _atomic_write(self.root / HISTORY, "\n".join(lines[:-1]) + "\n")
        self._point_to(previous)
        return previous
