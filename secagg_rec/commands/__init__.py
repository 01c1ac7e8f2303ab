"""Sub-commands of ``secagg-rec``; one module per command, each with ``register``."""
