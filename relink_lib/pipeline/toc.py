"""Read the book's table of contents (``_toc.yml``) to find the chapter notebooks, in order."""

from __future__ import annotations

from pathlib import Path

import yaml


def toc_entries(toc_path: str | Path) -> list[str]:
    """All ``file`` entries of a jupyter-book ``_toc.yml`` (root first), without extensions."""
    toc_path = Path(toc_path)
    if not toc_path.exists():
        raise FileNotFoundError(f"{toc_path}: the book's table of contents is missing")
    data = yaml.safe_load(toc_path.read_text())
    if not isinstance(data, dict) or "root" not in data:
        raise ValueError(f"{toc_path}: expected a mapping with a 'root' entry (jupyter-book 1.x format)")
    entries = [str(data["root"])]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                entries.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in data.items() if k != "root"})
    return entries


def chapter_notebooks(root: str | Path) -> list[Path]:
    """The jupytext ``.py`` notebooks listed in ``root/_toc.yml``, in book order."""
    root = Path(root)
    out = []
    for entry in toc_entries(root / "_toc.yml"):
        if entry.startswith("notebooks/"):
            path = root / f"{entry}.py"
            if not path.exists():
                raise FileNotFoundError(f"{path}: listed in _toc.yml as {entry!r} but missing")
            out.append(path)
    return out
