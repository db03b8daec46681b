"""Retention: deleting conversations, with every row they own, once they have been idle for
longer than a given age."""
