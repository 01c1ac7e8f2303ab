"""Federated MovieLens over Flower with local DP-SGD and secagg_rec secure aggregation."""
