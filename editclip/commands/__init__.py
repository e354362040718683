"""Sub-commands of the ``editclip`` command line, one module each."""
