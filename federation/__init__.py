"""Federation between district banks' deployments (docs/federation.md).

What exists: the peers a deployment knows (``federation.peers``, stored by
``federation.storage``) and the signatures on requests between them (``federation.signing``).
Transfers, mutual witnessing and settlement are later work.
"""
