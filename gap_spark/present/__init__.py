"""Presentation: the run's figures (``plots_*``), the report's numbers-to-sentences content and tables,
and its rendering through Jinja2 templates (``templates/``)."""
