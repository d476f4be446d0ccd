"""The book pipeline: notebooks (jupytext .py) -> papermill -> executed .ipynb -> jupyter-book."""
