"""labkit: the package behind the SFT <-> RL lab. Each module is one concept; see README.md and DESIGN §4."""
__version__ = "0.1.0"
