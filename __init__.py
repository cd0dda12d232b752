"""dagu: Dagu v2 workflows compiled to checked plans and run under supervision."""

__version__ = "0.1.0"
