"""Test app: known vectors through secagg_rec's secure aggregation on Flower."""
