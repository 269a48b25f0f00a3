"""Package data: pilot cities, TOU tariffs and vehicle models, each figure with its source."""
