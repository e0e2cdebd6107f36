"""The model bucket: each model's versions as the apps fetch them, published atomically, signed, with ``LATEST``.

* :mod:`bucket.layout`: the paths and names of the bucket contract, and the checks every path goes through;
* :mod:`bucket.storage`: the file operations, ``os`` for local paths and fsspec for URLs (``gs://``, ``s3://``);
* :mod:`bucket.versions`: version names, the complete versions, their manifests, the one ``LATEST`` names;
* :mod:`bucket.history`: the append-only event log, and ``LATEST`` derived from it;
* :mod:`bucket.publish`: atomic publish, an interrupted publish finished, rollback, cleanup, the manifest
  and the golden files;
* :mod:`bucket.verify`: a version's signature, checksums and golden replays;
* :mod:`bucket.live`: the model live at ``LATEST``, checked against its manifest;
* :mod:`bucket.signing`: Ed25519 signatures of the manifests.
"""
