"""Analytics: the questions analysts ask of the database, as portable SQL."""
