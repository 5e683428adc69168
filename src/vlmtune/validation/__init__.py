"""Checking a whole dataset before training and reporting what it will cost in tokens."""
