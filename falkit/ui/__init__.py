"""What a notebook shows, as a leaf toolkit with no falkit imports: :mod:`.widgets` (tables,
progress bars, the approval gate's buttons; ipywidgets in JupyterLab, text headless)."""
