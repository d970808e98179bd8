"""Layer runners: generate the raw zone, bronze, silver, gold. Generic over table specs."""
