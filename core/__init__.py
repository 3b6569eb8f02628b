"""Nurture: signup intake, segmented nurture sequences and their side channels."""
