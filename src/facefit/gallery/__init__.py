"""The face database for 1:N recognition: enrolment, storage, vector search.

``store`` defines what a backend must do (SQLite by default, PostgreSQL with
pgvector to share one gallery between servers); ``index`` the vector indexes
(exact, faiss HNSW); ``gallery`` ties them to a model. Nothing here loads a
model or opens a database at import time.
"""

from facefit.gallery.records import FaceRecord, Identification, Match, NewFace, PersonSummary

__all__ = ["FaceRecord", "Identification", "Match", "NewFace", "PersonSummary"]
