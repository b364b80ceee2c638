"""Results -> plotly figures, shared by reports and the explorer. One module per capability.

`common` holds the generic shapes (layer x head heatmaps, curves, patterns);
capability modules (`induction`, `circuits`, `toy`, ...) compose them.
"""
