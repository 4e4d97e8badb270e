"""Renderers: a run record in; text tables, Markdown, HTML and plots out. The runners of
:mod:`embedkit.runs` build the records and render nothing."""
