"""nurture: marketing automation for B2B lead nurturing and qualification."""

__version__ = "0.1.0"
