"""The labs: each module registers one or more plan kinds (tlcore.kinds) built from the engine's
phases (tlcore.train.phases). Importing this package registers them all."""
from . import similarity  # noqa: F401
