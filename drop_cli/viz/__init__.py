"""Pictures: training curves, label overlays, ranking grids (PNG through matplotlib's Agg backend)."""
