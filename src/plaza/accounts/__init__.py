"""Accounts: users, password hashing, bearer tokens."""
