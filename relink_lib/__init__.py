"""relink: audit and mitigate image-to-report re-linkage in chest X-ray VLMs."""
__version__ = "0.1.0"
