"""Transactions: the stored record, its schedule and its history."""
