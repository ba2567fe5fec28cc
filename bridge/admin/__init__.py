"""Federation admin: onboarding and offboarding practitioners, the audit log, `caducee admin`."""
