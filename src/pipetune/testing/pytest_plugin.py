"""pytest plugin exposing the pipetune testing kit's fixtures."""
