"""The package version, in a leaf module so that the file writers need not import the package."""

__version__ = "0.2.0"
