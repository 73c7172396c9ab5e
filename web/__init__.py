"""The phone web app: server-rendered pages over the same services as the JSON API."""
