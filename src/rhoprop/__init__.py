"""rhoprop: predict crystal properties from the electronic charge density."""

__version__ = "0.1.0"
