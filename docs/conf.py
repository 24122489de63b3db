"""Sphinx configuration of the sb3_elmur documentation (``sphinx-build -W docs docs/_build``)."""

import sb3_elmur

project = "sb3_elmur"
author = "sb3_elmur developers"
release = version = sb3_elmur.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings say what each parameter means
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
suppress_warnings = ["myst.xref_missing"]
