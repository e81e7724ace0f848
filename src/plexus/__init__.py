"""Plexus: a distributed virtual network for OpenStack-style clouds."""
