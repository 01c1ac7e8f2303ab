"""secagg_rec.rec (see DESIGN layout)."""
