"""Sphinx extension and MyST-NB MIME renderer: numbered figures and tables of the chapter notebooks.

A notebook output carrying :data:`relink_lib.floats.FLOAT_MIME` (a :class:`relink_lib.floats.Float`)
becomes a ``figure`` node (figures) or a :class:`table_float` node (tables, numbered as tables) with
the float's label as its target and its caption, so ``{numref}`` resolves to it from any page.
:func:`number_by_chapter` then numbers the floats and labelled equations of each chapter
``notebooks/NN_*`` as ``NN.k`` (in page order): "Figure 6.2", "Table 4.1", "(9.1)".

Loaded by ``_config.yml`` (``sphinx.extra_extensions``); the renderer is registered as the
``myst_nb.mime_renderers`` entry point ``relink-float`` (``pyproject.toml``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

from docutils import nodes

from ..floats import FLOAT_MIME, Float

CHAPTER_DOC = re.compile(r"^notebooks/(\d{2})_")
"""A chapter's docname; its two digits are the chapter number of its floats."""


LEGEND_OVERLAP_CLASS = "relink-legend-overlap"
"""The class of a figure whose legend covers plotted points (``Float.legend_overlaps``)."""


class table_float(nodes.figure):  # noqa: N801 (docutils node classes are lower-case by convention)
    """A numbered table: a figure-like block (caption, raw HTML table) counted as a ``table``."""


def _visit_table_float(self: Any, node: table_float) -> None:
    self.visit_figure(node)


def _depart_table_float(self: Any, node: table_float) -> None:
    self.depart_figure(node)


def float_nodes(document: nodes.document, payload: dict[str, Any], image_nodes: list[nodes.Node]) -> list[nodes.Node]:
    """The docutils node of a float: a ``figure`` (children ``image_nodes``) or a :class:`table_float`.

    ``payload`` is a :data:`FLOAT_MIME` entry; it is validated again here (a bad label or caption in a
    stored notebook fails the build with the label named). The label becomes the node's target.
    """
    spec = Float(
        kind=payload.get("kind", ""),
        label=payload.get("label", ""),
        caption=payload.get("caption", ""),
        content=payload.get("content", ""),
    )
    node: nodes.Element = nodes.figure() if spec.kind == "figure" else table_float()
    node["classes"].append(f"relink-{spec.kind}")
    if payload.get("legend_overlaps"):  # a legend over plotted data: the browser check reports the figure
        node["classes"].append(LEGEND_OVERLAP_CLASS)
    node["names"].append(nodes.fully_normalize_name(spec.label))
    document.note_explicit_target(node, node)
    # the caption comes last: docutils' HTML writer closes <figcaption> only at the figure's end. A
    # table's caption is shown above it by the book's CSS (figure.relink-table, book/_static/relink.css)
    # a table's HTML (which may be several stacked parts) goes in one block, so the CSS that lifts the
    # caption above it moves the caption only
    body = f'<div class="relink-float-body">{spec.content}</div>'
    node.extend(image_nodes if spec.kind == "figure" else [nodes.raw("", body, format="html")])
    node.append(nodes.caption(spec.caption, spec.caption))
    return [node]


class FloatMimeRenderer:
    """MyST-NB MIME renderer plugin for :data:`relink_lib.floats.FLOAT_MIME` (preferred over the fallbacks)."""

    mime_priority_overrides: ClassVar[Sequence[tuple[str, str, int | None]]] = [("*", FLOAT_MIME, 1)]

    @staticmethod
    def handle_mime(renderer: Any, data: Any, inline: bool) -> list[nodes.Node] | None:
        if data.mime_type != FLOAT_MIME:
            return None
        payload = data.content if isinstance(data.content, dict) else {}
        images: list[nodes.Node] = []
        if payload.get("kind") == "figure":
            from myst_nb.core.render import MimeData

            png = MimeData(
                "image/png",
                payload.get("content", ""),
                cell_metadata=data.cell_metadata,
                output_metadata={},
                cell_index=data.cell_index,
                output_index=data.output_index,
                line=data.line,
            )
            images = list(renderer.render_image(png))
        return float_nodes(renderer.renderer.document, payload, images)


FigNumbers = dict[str, dict[str, tuple[int, ...]]]
"""Sphinx's numbers of one page: kind ("figure", "table", "displaymath") -> {node id: number tuple}."""


def chapter_numbers(fignumbers: FigNumbers, chapter: int) -> FigNumbers:
    """Renumber one page's floats as ``(chapter, k)``, k = 1, 2, ... per kind in their page order.

    ``fignumbers`` is Sphinx's ``env.toc_fignumbers[docname]``: kind -> {id: number tuple}, the
    tuples increasing in page order.
    """
    out: FigNumbers = {}
    for kind, ids in fignumbers.items():
        ordered = sorted(ids, key=lambda i: ids[i])
        out[kind] = {i: (chapter, k) for k, i in enumerate(ordered, start=1)}
    return out


def number_by_chapter(app: Any, env: Any) -> list[str]:
    """``env-get-updated`` handler, after Sphinx's own numbering: chapter pages number as ``NN.k``."""
    changed = []
    for docname, numbers in list(env.toc_fignumbers.items()):
        found = CHAPTER_DOC.match(docname)
        if found:
            renumbered = chapter_numbers(numbers, int(found.group(1)))
            if renumbered != numbers:
                env.toc_fignumbers[docname] = renumbered
                changed.append(docname)
    return changed


def setup(app: Any) -> dict[str, Any]:
    # html= covers every HTML builder (singlehtml, which the PDF prints, included)
    app.add_enumerable_node(table_float, "table", None, html=(_visit_table_float, _depart_table_float))
    app.connect("env-get-updated", number_by_chapter, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
