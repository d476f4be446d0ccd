"""relink: audit and mitigate image-to-report re-linkage in chest X-ray VLMs."""

import os as _os

__version__ = "0.1.0"

if _os.environ.get("RELINK_NUMERICS"):  # a kernel started by the pipeline: apply its numerical mode first
    from .numerics import apply_from_env as _apply_from_env

    _apply_from_env()
