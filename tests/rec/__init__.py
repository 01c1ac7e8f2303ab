"""Tests of secagg_rec.rec."""
