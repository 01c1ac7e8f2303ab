"""secagg_rec.fl (see DESIGN layout)."""
