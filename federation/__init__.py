"""Federation between district banks' deployments (docs/federation.md).

What exists: the peers a deployment knows (``federation.peers``, stored by
``federation.storage``), the signatures on requests between them (``federation.signing``) and
mutual witnessing (``federation.witnessing``, its tables in ``federation.witness_storage``).
Transfers and settlement are later work.
"""
