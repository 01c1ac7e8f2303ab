"""secagg_rec.flower (see DESIGN layout)."""
