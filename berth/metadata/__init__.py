"""berth's metadata store: the only user of SQLite (containerd's metadata package).

``MetadataStore(root)`` keeps ``<root>/metadata.db`` (WAL, foreign keys,
busy_timeout, synchronous=FULL, a ``schema_version`` table with forward
migrations in ``berth.metadata.schema``). Every method is one transaction;
``with store.tx() as tx:`` runs several in one (commit at the end, rollback of
everything if the block raises). One SQLite connection per thread: the store
can be used from an asyncio daemon's worker threads (never from the event
loop itself: the calls block).

What it holds
-------------
* namespaces (name + labels); ``default`` is created when the store opens;
  writes into a missing namespace create it; ``delete_namespace`` refuses one
  that still has images, containers or leases (FailedPrecondition).
* images, per namespace: name -> target descriptor {mediaType, digest, size},
  labels, created/updated times. Many names may share one target;
  ``image_names_for_target`` lists them (docker's tag/rmi).
* containers, per namespace: a plain record (id, unique name, image name,
  snapshotter, snapshot key, runtime, spec JSON, labels, extensions).
* leases, per namespace: an id, an optional expiry, labels and resources
  (content digests, ingest refs, snapshot keys).
* references, global because content and snapshots are stored once for all
  namespaces: ``add_content_refs(parent, children)`` (index -> manifests,
  manifest -> config + layers) and ``add_snapshot_ref(digest, key,
  snapshotter)`` (an image config -> the committed snapshot of its whole
  layer chain, i.e. its top chain ID).

Garbage collection
------------------
``collect(content_store, snapshotter)`` marks from the roots, across all
namespaces:

* every image's target digest;
* every container's (snapshotter, snapshot key), and its image: the target of
  that name in the container's namespace, or the image field itself when it
  is a digest;
* every resource of every lease that has not expired;

then follows content refs (transitively) and the snapshot refs of every live
blob. Snapshot *parents* are asked of the snapshotter (``list()``: its
``meta.json`` files are the only record of them, written atomically with the
snapshot, so there is no second copy to drift after a crash between a commit
and a metadata write): a live snapshot keeps its whole parent chain.

It then sweeps: expired leases (the rows); blobs the content store has that
are not marked (and the refs recorded from them); ingests that no live lease
holds and that started more than ``grace`` seconds ago (default one hour, so
an interrupted pull can still resume; an ingest a writer holds is skipped);
in each snapshotter, committed snapshots not marked, plus active snapshots
and views not marked and older than ``grace`` — children before parents.
The returned ``GCReport`` lists what went and how many bytes.

The whole collection holds SQLite's write lock, so nothing can add a root or
a lease while it decides and deletes. The contract for writers follows:
put a resource under a lease (``add_lease_resource``) *before* writing it,
and record the refs and the image before ending the lease, e.g.::

    with store.lease("default", ttl=3600) as lease:
        store.add_lease_resource(lease.namespace, lease.id, "content", manifest_digest)
        ...fetch and commit blobs, unpack into snapshots (each leased first)...
        with store.tx() as tx:
            tx.add_content_refs(manifest_digest, [config_digest, *layer_digests])
            tx.add_snapshot_ref(config_digest, top_chain_id, "overlayfs")
            tx.put_image("default", "docker.io/library/busybox:latest", manifest_desc)

A daemon killed mid-pull leaves its lease; the content goes once the lease
expires, or at the next start if the daemon deletes the leases it knows are
dead (e.g. labelled with a previous boot id) and runs
``collect(..., grace=0, cleanup=True)`` before serving.
"""

from berth.metadata.records import (
    CONTENT,
    DEFAULT_NAMESPACE,
    DEFAULT_SNAPSHOTTER,
    INGEST,
    SNAPSHOT,
    Container,
    Descriptor,
    GCReport,
    Image,
    Lease,
    LeaseResource,
    Namespace,
    Object,
    Roots,
)
from berth.metadata.store import DB_NAME, DEFAULT_GRACE, MetadataStore
from berth.metadata.tx import UNSET, Tx

__all__ = [
    "CONTENT",
    "DB_NAME",
    "DEFAULT_GRACE",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SNAPSHOTTER",
    "INGEST",
    "SNAPSHOT",
    "UNSET",
    "Container",
    "Descriptor",
    "GCReport",
    "Image",
    "Lease",
    "LeaseResource",
    "MetadataStore",
    "Namespace",
    "Object",
    "Roots",
    "Tx",
]
