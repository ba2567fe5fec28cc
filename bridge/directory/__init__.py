"""The practitioner directory: the national register (RPPS) imported, searchable, linked to
Matrix IDs."""
