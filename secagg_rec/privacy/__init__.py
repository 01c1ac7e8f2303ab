"""secagg_rec.privacy (see DESIGN layout)."""
