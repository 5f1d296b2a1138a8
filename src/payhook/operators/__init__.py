"""Operators: authentication, listing, timelines, replay and the audit log of what they did."""
