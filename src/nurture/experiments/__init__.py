"""Experiments inside journeys: sequential tests, goals, and simulations of their error rates (pure)."""
