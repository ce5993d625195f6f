"""Revision files, applied in the order of their ``down_revision`` links."""
