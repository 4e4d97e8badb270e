"""Formats of what embedkit keeps on disk and how it was made: a fitted map and where it came
from (:mod:`.fitted`), the recipe (:mod:`.recipe`) and the encode folder (:mod:`.encode_folder`)."""
