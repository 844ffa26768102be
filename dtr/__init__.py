"""The ``dtr`` command line: the edge where files and the console meet the pure core."""
