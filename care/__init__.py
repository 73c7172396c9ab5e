"""The time-bank workflow: catalogue, requests, service records, redemption, gifts, pool."""
