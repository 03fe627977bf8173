"""clustermatch: competence matching for regional innovation clusters.

Importing this package is cheap: models, indexes and databases load only when first used.
"""

__version__ = "0.1.0"
