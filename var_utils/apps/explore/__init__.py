"""The interactive explorer for JupyterLab: ``var_utils.explore()`` (needs ``ipywidgets``).

``session`` holds the cached state and the VAR view, ``render`` draws the panels,
``app`` builds the widgets.
"""

from .app import Explorer, ExplorerError, explore
from .session import ExplorerSession, refine_view

__all__ = ["Explorer", "ExplorerError", "ExplorerSession", "explore", "refine_view"]
