"""plumline: on-policy, execution-verified preference data for code LMs."""
__version__ = "0.1.0"
