"""The Timebank log: canonical entries, hash chain, RFC 6962 tree, signed checkpoints, postings."""
