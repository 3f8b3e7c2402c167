"""avatarjobs-cli: the command line client of the avatarjobs HTTP API."""

__version__ = "0.1.0"
