"""secagg_rec.sim (see DESIGN layout)."""
