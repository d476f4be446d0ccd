"""The MODELS list of a real-data run: one parser for the paper preflight and the model stage.

A MODELS list names local checkpoints, least specialised first, as a list of mappings
``{"name", "path", "kind" (optional), "description" (optional)}``, given inline or as a JSON or
YAML file (``.yaml`` / ``.yml`` read as YAML, anything else as JSON). :func:`read_model_list`
reports every problem of the list at once, naming the entry and what was expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import yaml

from . import KINDS

__all__ = ["ModelEntry", "ModelListError", "ModelListSpec", "read_model_list", "CHECKPOINT_KINDS"]

ModelListSpec = Union[str, Path, Sequence[Mapping[str, Any]], None]
"""A MODELS list as given: the list of ``{name, path, kind, description}`` mappings, or the path of a
JSON / YAML file holding it (``None``: not set)."""


class ModelListError(ValueError):
    """The MODELS list cannot be read or has entries of the wrong shape (every problem in the message)."""


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint of a MODELS list. kind: one of :data:`KINDS`, or ``None`` (detected from the files)."""

    name: str
    path: Path
    kind: str | None = None
    description: str = ""


CHECKPOINT_KINDS: tuple[dict[str, str], ...] = tuple(
    json.loads((Path(__file__).with_name("checkpoint_kinds.json")).read_text(encoding="utf-8"))
)
"""What each checkpoint kind looks like on disk and where its projection heads sit (``checkpoint_kinds.json``;
chapters 3 and 10 render it): one row per kind with ``kind``, ``directory holds``, ``heads (pre-projection -> joint)``
and ``preprocessing``."""


def _load_file(file: Path) -> Any:
    if not file.is_file():
        raise ModelListError(f"{file}: MODELS file not found; expected a JSON or YAML list of {{name, kind, path}}")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ModelListError(
                f"{file}: not valid YAML ({type(err).__name__} at {getattr(err, 'problem_mark', '?')})"
            ) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelListError(
            f"{file}: not valid JSON ({err.msg} at line {err.lineno}); .yaml / .yml files are read as YAML"
        ) from err


def read_model_list(models: ModelListSpec) -> list[ModelEntry]:
    """Parse a MODELS list (inline list, or a path to a JSON / YAML file) into :class:`ModelEntry` items.

    Raises :class:`ModelListError` listing every malformed entry (missing ``name`` / ``path``, an
    unknown ``kind``), or naming the file that cannot be read. Paths are not checked here.
    """
    if models is None or (isinstance(models, str) and not models.strip()):
        raise ModelListError(
            "MODELS is not set: expected a list of {name, kind, path} (or a JSON / YAML file holding it), "
            "least specialised first"
        )
    if isinstance(models, (str, Path)):
        models = _load_file(Path(models).expanduser())
    if not isinstance(models, Sequence) or isinstance(models, (str, bytes)) or not models:
        raise ModelListError(f"MODELS: expected a non-empty list of {{name, kind, path}}, got {type(models).__name__}")
    entries, problems = [], []
    for i, entry in enumerate(models):
        if not isinstance(entry, dict):
            problems.append(
                f"MODELS entry {i}: expected a mapping with name, path (and optionally kind), "
                f"got {type(entry).__name__}"
            )
            continue
        missing = [k for k in ("name", "path") if not entry.get(k)]
        kind = entry.get("kind") or None
        if missing:
            problems.append(
                f"MODELS entry {i}: missing {', '.join(missing)}; expected keys name, path (and optionally kind)"
            )
        if kind is not None and kind not in KINDS:
            problems.append(
                f"MODELS entry {i} ({entry.get('name', '?')!r}): kind={kind!r}, expected one of {', '.join(KINDS)}"
            )
        if not missing and (kind is None or kind in KINDS):
            entries.append(
                ModelEntry(
                    name=str(entry["name"]),
                    path=Path(str(entry["path"])).expanduser(),
                    kind=kind,
                    description=str(entry.get("description", "")),
                )
            )
    if problems:
        raise ModelListError("; ".join(problems))
    return entries
