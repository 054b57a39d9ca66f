"""Hosts: channels and sessions to function hosts, the protocol they speak, its wire
conversion and signing."""
