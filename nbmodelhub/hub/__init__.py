"""Sharing: hubs (publish, pull, search), model cards, remotes, and import from other hubs' files.

The verbs are methods of :class:`nbmodelhub.Repository`; this package holds how they work.
"""
