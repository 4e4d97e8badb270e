"""File formats that hold vectors and say how they were made: the recipe (:mod:`.recipe`) and
the encode folder (:mod:`.encode_folder`)."""
