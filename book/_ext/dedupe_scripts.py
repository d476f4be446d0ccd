"""Sphinx extension: drop inline scripts that were registered twice.

sphinx-thebe 0.3.1 under jupyter-book 1.x registers its inline configuration script twice (as does sphinx-togglebutton),
which makes the browser raise "Identifier 'THEBE_JS_URL' has already been declared" on every
page. This keeps the first copy of each identical script.
"""
from __future__ import annotations


def _dedupe(app, pagename, templatename, context, doctree):  # noqa: ANN001 (Sphinx signature)
    seen = set()
    unique = []
    for script in context.get("script_files", []):
        # an inline script may be registered once with filename None and once with "" (same body)
        filename = getattr(script, "filename", script) or ""
        key = (str(filename), tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def setup(app):  # noqa: ANN001, ANN201
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
